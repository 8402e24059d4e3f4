#!/usr/bin/env python3
"""PyTorch reference for `npm run bench` (issue 7): the `small` benchmark configuration run through
nanoVLM v0.1's own model code, measured the way core/commands/bench.ts measures ours, so that the
ratio can be taken side by side on one machine.

    git clone --branch v0.1 https://github.com/huggingface/nanoVLM /tmp/nanovlm-v0.1
    apt-get install python3-torch        # Debian: torch 1.13, as the fixtures were made
    python3 bench/reference/nanovlm_small.py --nanovlm /tmp/nanovlm-v0.1 [--json ref.json] [--threads N]

Same shapes and batch as recipes/bench/small.yaml + bench.ts benchBatch(): batch 8, 64 text
positions, row 0 left-padded by 16, targets = next token with the first half -100, random weights
(seeded), AdamW with nanoVLM v0.1's two groups (MP 2e-3, backbones 1e-4; v0.1 does not clip).
Timed: forward (no_grad pass), forward+backward, optimiser step, and the process CPU time of
forward+backward+step (robust when the machine is shared); generation = nanoVLM v0.1
VisionLanguageModel.generate (full recompute, no KV cache), 32 new tokens for one row, one warm-up
run of that length then the median of --gen-runs 3 (the method of `vlm bench`); and greedy
generation with a KV cache written over v0.1's modules (bench/reference/kv_generate.py; v0.1 has none), checked
to give the same tokens as greedy full recompute, timed the same way.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time
import types

p = argparse.ArgumentParser()
p.add_argument('--nanovlm', required=True, help='a nanoVLM v0.1 checkout (the folder holding models/)')
p.add_argument('--steps', type=int, default=10)
p.add_argument('--warmup', type=int, default=2)
p.add_argument('--gen-tokens', type=int, default=32)
p.add_argument('--gen-runs', type=int, default=3, help='measured generation runs after one warm-up run (median reported), as vlm bench')
p.add_argument('--threads', type=int, default=0, help='torch threads (default: torch default)')
p.add_argument('--json')
args = p.parse_args()

# nanoVLM imports safetensors only for save/load, which the benchmark does not use
if 'safetensors' not in sys.modules:
    try:
        import safetensors.torch  # noqa: F401
    except ImportError:
        st = types.ModuleType('safetensors')
        st.torch = types.ModuleType('safetensors.torch')
        st.torch.load_model = st.torch.save_model = None
        sys.modules['safetensors'] = st
        sys.modules['safetensors.torch'] = st.torch
sys.path.insert(0, os.path.abspath(args.nanovlm))

import torch  # noqa: E402
import torch.optim as optim  # noqa: E402
from models.config import VLMConfig  # noqa: E402
from models.vision_language_model import VisionLanguageModel  # noqa: E402
from kv_generate import time_kv_generate  # noqa: E402  (bench/reference/kv_generate.py)

if args.threads:
    torch.set_num_threads(args.threads)
torch.manual_seed(0)

cfg = VLMConfig(
    vit_hidden_dim=192, vit_inter_dim=768, vit_patch_size=16, vit_img_size=128, vit_n_heads=3, vit_n_blocks=4,
    lm_hidden_dim=256, lm_inter_dim=768, lm_n_heads=4, lm_n_kv_heads=2, lm_n_blocks=4, lm_vocab_size=4096,
    lm_max_length=64, mp_pixel_shuffle_factor=2, vlm_load_backbone_weights=False,
)
model = VisionLanguageModel(cfg, load_backbone=False)
model.train()

B, T, S, V = 8, cfg.lm_max_length, cfg.vit_img_size, cfg.lm_vocab_size
g = torch.Generator().manual_seed(0)
images = torch.randint(0, 256, (B, 3, S, S), generator=g).float() / 255
input_ids = torch.randint(1, V, (B, T), generator=g)
attention_mask = torch.ones(B, T, dtype=torch.long)
pad = round(T / 4)
input_ids[0, :pad] = 0
attention_mask[0, :pad] = 0
targets = torch.full((B, T), -100, dtype=torch.long)
for b in range(B):
    start = max(T // 2, pad if b == 0 else 0)
    targets[b, start:T - 1] = input_ids[b, start + 1:T]

param_groups = [{'params': model.MP.parameters(), 'lr': 2e-3},
                {'params': list(model.decoder.parameters()) + list(model.vision_encoder.parameters()), 'lr': 1e-4}]
optimizer = optim.AdamW(param_groups)


def step():
    t0 = time.perf_counter()
    with torch.no_grad():
        model(input_ids, images, attention_mask=attention_mask, targets=targets)
    t1 = time.perf_counter()
    c1 = time.process_time()
    optimizer.zero_grad()
    _, loss = model(input_ids, images, attention_mask=attention_mask, targets=targets)
    loss.backward()
    loss.item()
    t2 = time.perf_counter()
    optimizer.step()
    t3 = time.perf_counter()
    c3 = time.process_time()
    return {'forward': (t1 - t0) * 1e3, 'fwdbwd': (t2 - t1) * 1e3, 'optimizer': (t3 - t2) * 1e3, 'cpu': (c3 - c1) * 1e3}


for _ in range(args.warmup):
    step()
times = [step() for _ in range(args.steps)]


def spread(xs):
    return {'median': statistics.median(xs), 'min': min(xs), 'max': max(xs)}


total = [t['fwdbwd'] + t['optimizer'] for t in times]
image_tokens = (cfg.vit_img_size // cfg.vit_patch_size) ** 2 // cfg.mp_pixel_shuffle_factor ** 2
tokens_per_step = int(attention_mask.sum()) + B * image_tokens

model.eval()
ids1 = input_ids[1:2]
img1 = images[1:2]
# as `vlm bench`: one warm-up run of the same length, then the median of --gen-runs runs
gen_runs = []
with torch.no_grad():
    model.generate(ids1, img1, max_new_tokens=args.gen_tokens)
    for _ in range(args.gen_runs):
        t0 = time.perf_counter()
        c0 = time.process_time()
        out = model.generate(ids1, img1, max_new_tokens=args.gen_tokens)
        gen_runs.append(((time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3))
        assert out.shape[1] == args.gen_tokens
gen_ms = statistics.median(r[0] for r in gen_runs)
gen_cpu_ms = statistics.median(r[1] for r in gen_runs)


kv = time_kv_generate(model, ids1, img1, args.gen_tokens, args.gen_runs)
kv_same, kv_ms, kv_cpu_ms = kv['same_tokens_as_recompute'], kv['ms'], kv['cpu_ms']


def openblas_core():
    # torch links the system BLAS; the same library answers here if it is OpenBLAS
    import ctypes
    for name in ('libopenblas.so.0', 'libblas.so.3'):
        try:
            lib = ctypes.CDLL(name)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib.openblas_get_corename().decode()
        except (OSError, AttributeError):
            continue
    return 'not OpenBLAS'

res = {
    'name': 'pytorch-nanovlm-v0.1-small', 'backend': f'torch {torch.__version__}', 'threads': torch.get_num_threads(),
    'batch_size': B, 'seq_len': T, 'image_tokens': image_tokens,
    'params': sum(p.numel() for p in model.parameters()), 'steps': args.steps, 'warmup': args.warmup,
    'train_step_ms': spread(total),
    'train_step_cpu_ms': spread([t['cpu'] for t in times]),
    'forward_ms': spread([t['forward'] for t in times]),
    'backward_ms': spread([max(0.0, t['fwdbwd'] - t['forward']) for t in times]),
    'optimizer_ms': spread([t['optimizer'] for t in times]),
    'tokens_per_step': tokens_per_step, 'tokens_per_s': tokens_per_step / statistics.median(total) * 1e3,
    'generate': {'new_tokens': args.gen_tokens, 'no_cache': {'tokens_per_s': args.gen_tokens / gen_ms * 1e3, 'ms': gen_ms, 'cpu_ms': gen_cpu_ms},
                 'kv_cache': {'tokens_per_s': args.gen_tokens / kv_ms * 1e3, 'ms': kv_ms, 'cpu_ms': kv_cpu_ms,
                              'same_tokens_as_recompute': kv_same}},
    'openblas_core': openblas_core(),
    'peak_rss_bytes': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
}
w = 36
print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads, OpenBLAS {res['openblas_core']} kernels "
      f"(OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}), nanoVLM v0.1, small")
for k in ['train_step_ms', 'train_step_cpu_ms', 'forward_ms', 'backward_ms', 'optimizer_ms']:
    s = res[k]
    print(f"{k:<{w}}{s['median']:.1f} ({s['min']:.1f}-{s['max']:.1f})")
print(f"{'tokens_per_s':<{w}}{res['tokens_per_s']:.0f}")
print(f"{'generate no-cache tok/s':<{w}}{res['generate']['no_cache']['tokens_per_s']:.1f}")
print(f"{'generate CPU ms/token, no cache':<{w}}{gen_cpu_ms / args.gen_tokens:.1f}")
print(f"{'generate KV-cache tok/s':<{w}}{res['generate']['kv_cache']['tokens_per_s']:.1f} (same tokens as full recompute: {kv_same})")
print(f"{'peak RSS MiB':<{w}}{res['peak_rss_bytes'] / 2**20:.0f}")
print(f"{'params':<{w}}{res['params']:,}")
if args.json:
    with open(args.json, 'w') as f:
        json.dump(res, f, indent=2)
