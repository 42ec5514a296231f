"""gRPC servicers: the admin API edgectl calls and the enrollment API agents call."""
