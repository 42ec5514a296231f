"""On-device profiling: candidate variants benchmarked by a few devices of each hardware class.

    targets.py    which devices profile (a few per hardware class, online first)
    requests.py   the signed ProfileRequest command per device, recorded in the store
    results.py    ProfileResult events -> measured latency per (artifact, hardware class); MeasuredLatency for selection
    api.py        the body of the ProfileModel rpc
"""
