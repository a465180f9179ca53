"""What Task 3 and the probes measure, apart from drawing it: the pictures' decoders
(`decoders`), each channel's measures and rules (`evidence`, `findings`), top-9 projections
and occlusion (`projections`, `occlusion`), the random networks and the two nulls
(`random_models`, `baselines`, `nulls`), and the linear probes (`probes`).
"""
