"""Training img/s of googlenet_small configurations (batch 128, 28x28, one SGD step), as in docs/RESULTS.md.

    python scripts/train_throughput.py 0.25,1,1,1 0.5,2,1,1   # width,stem_stride,bf16,channels_last[,compile]

Median of the steps after 3 warm-up steps, random data, 2 threads.
"""

from __future__ import annotations

import sys
import time

import torch
import torch.nn.functional as F

from inceptionnet import create_model


def run(
    width: float, stride: int, amp: bool, cl: bool, bs: int = 128, steps: int = 12, compile_: bool = False
) -> None:
    torch.manual_seed(0)
    m = create_model("googlenet_small", num_classes=10, in_chans=1, width=width, stem_stride=stride)
    x, y = torch.randn(bs, 1, 28, 28), torch.randint(0, 10, (bs,))
    if cl:
        m = m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    f = torch.compile(m) if compile_ else m
    m.train()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(f(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    med = sorted(times[3:])[len(times[3:]) // 2]
    params = sum(p.numel() for p in m.parameters())
    print(f"width={width} stem_stride={stride} bf16={amp} channels_last={cl} compile={compile_} "
          f"params={params / 1e6:.2f}M  {bs / med:.0f} img/s", flush=True)  # fmt: skip


if __name__ == "__main__":
    torch.set_num_threads(2)
    for spec in sys.argv[1:]:
        w, s, a, c, *rest = spec.split(",")
        run(float(w), int(s), a == "1", c == "1", compile_=bool(rest and rest[0] == "1"))
