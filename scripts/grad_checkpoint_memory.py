"""Peak memory of one training step (forward + backward) with and without gradient checkpointing.

    python scripts/grad_checkpoint_memory.py MODEL SIZE BATCH on|off [profile]

One configuration per fresh process: the peak RSS (resource.getrusage ru_maxrss) before the step
(model, input) and after it; the bytes autograd keeps from forward for backward (saved_tensors_hooks;
checkpointed blocks keep only their input); with "profile", a second step under torch.profiler
(profile_memory=True): the peak of live CPU tensor bytes from its memory timeline (parameters,
gradients, activations, temporaries)."""

import json
import resource
import sys
import time

import torch

import inceptionnet

name, size, batch, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(2)
torch.manual_seed(0)
model = inceptionnet.create_model(name, num_classes=1000).train()
model.set_grad_checkpointing(mode == "on")
x = torch.randn(batch, 3, size, size)
y = torch.randint(0, 1000, (batch,))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
saved = {"bytes": 0, "seen": set()}


def pack(t):
    s = t.untyped_storage()
    key = (s.data_ptr(), s.nbytes())
    if key not in saved["seen"]:
        saved["seen"].add(key)
        saved["bytes"] += s.nbytes()
    return t


t0 = time.perf_counter()
with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
    loss = torch.nn.functional.cross_entropy(model(x), y)
loss.backward()
dt = time.perf_counter() - t0
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(
    json.dumps(
        dict(
            model=name,
            size=size,
            batch=batch,
            checkpointing=mode,
            rss_before_mib=round(before / 1024),
            rss_peak_mib=round(after / 1024),
            step_mib=round((after - before) / 1024),
            saved_for_backward_mib=round(saved["bytes"] / 2**20),
            step_s=round(dt, 1),
        )
    )
)

if "profile" in sys.argv[5:]:  # live tensor bytes, from torch's CPU allocator events
    from torch.profiler import ProfilerActivity, profile

    model.zero_grad(set_to_none=True)
    with profile(
        activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
    ) as prof:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    mp = prof._memory_profile()
    from torch.profiler._memory_profiler import MemoryProfileTimeline

    tl = MemoryProfileTimeline(mp)
    t, sz = tl._coalesce_timeline(torch.device("cpu"))
    peak = max(sum(row) for row in sz)
    print(json.dumps(dict(model=name, checkpointing=mode, live_tensor_peak_mib=round(peak / 2**20))))
