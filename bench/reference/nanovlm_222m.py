#!/usr/bin/env python3
"""PyTorch reference for the full-size model (issue 14): nanoVLM v0.1's own code, unchanged, on the
222M model (VLMConfig's defaults), measured the way `vlm memory` / `vlm bench` measure ours.

    git clone --branch v0.1 https://github.com/huggingface/nanoVLM /tmp/nanovlm-v0.1
    apt-get install python3-torch        # Debian 12: torch 1.13 + OpenBLAS
    python3 bench/reference/nanovlm_222m.py --nanovlm /tmp/nanovlm-v0.1 --batch-size 8 [--steps 2] [--generate 32] [--json r.json]
    python3 bench/reference/nanovlm_222m.py --nanovlm /tmp/nanovlm-v0.1 --dump <model folder> --out <dir>

Training (default): one process per batch size (its peak RSS is that batch size's), random weights
(seeded) or `--model <folder>` (VisionLanguageModel.from_pretrained), the batch of `vlm bench`
(core/commands/bench.ts benchBatch): B rows of 79 text positions, row 0 left-padded by 20, targets =
next token with the first half -100, 224 px images; fwd + bwd + AdamW with v0.1's two groups (MP 2e-3,
backbones 1e-4), no clipping (v0.1). The first step creates AdamW's state; the second is timed (wall
and process CPU time). Printed: step ms, CPU ms, peak RSS (ru_maxrss, as `vlm memory`). `--generate N`:
then greedy generation of N tokens for one unpadded row with a KV cache over v0.1's modules
(bench/reference/kv_generate.py; one warm-up run checked against full recompute, median of --gen-runs).

`--dump <folder>`: loads a checkpoint folder (config.json + model.safetensors, e.g. a model
`vlm publish` wrote, LoRA adapters merged) with nanoVLM v0.1's from_pretrained and writes, into
--out, inputs.safetensors (images, input_ids, attention_mask, targets) and expected.safetensors
(vision_out, mp_out, decoder_hidden, logits, loss) in the layout of ../shared/fixtures/nanovlm, so
that `vlm compare --model <folder> --inputs <out>/inputs.safetensors --expected <out>/expected.safetensors`
checks our outputs on that checkpoint against PyTorch's.

Debian 12 has no python3-safetensors: a stand-in with the real file format and save_model/load_model's
shared-tensor handling (the tied head stored once, the dropped alias in __metadata__) is used when the
package is absent.
"""
import argparse
import json
import os
import resource
import struct
import sys
import time
import types

p = argparse.ArgumentParser()
p.add_argument('--nanovlm', required=True, help='a nanoVLM v0.1 checkout (the folder holding models/)')
p.add_argument('--batch-size', type=int, default=8)
p.add_argument('--steps', type=int, default=1, help='timed steps after the first (untimed) one')
p.add_argument('--threads', type=int, default=1, help='torch threads (default 1, as `vlm memory` on wasm)')
p.add_argument('--model', help='a checkpoint folder to train from (default: random weights, seed 0)')
p.add_argument('--dump', help='a checkpoint folder: write inputs/expected for `vlm compare` instead of training')
p.add_argument('--out', help='output folder of --dump')
p.add_argument('--batch-dump', type=int, default=2, help='rows of the --dump batch')
p.add_argument('--generate', type=int, default=0, help='after training: greedy generation of N tokens with a KV cache (bench/reference/kv_generate.py), as `vlm bench --kv-only`')
p.add_argument('--gen-runs', type=int, default=3, help='measured generation runs after one warm-up run (median reported)')
p.add_argument('--json')
args = p.parse_args()

import torch  # noqa: E402

_ST_DTYPES = {torch.float32: 'F32', torch.int64: 'I64', torch.int32: 'I32'}
_ST_TORCH = {v: k for k, v in _ST_DTYPES.items()}


def st_save_file(tensors, path, metadata=None):
    header = {'__metadata__': metadata} if metadata else {}
    blobs, off = [], 0
    for name in sorted(tensors):
        b = tensors[name].detach().contiguous().cpu().numpy().tobytes()
        header[name] = {'dtype': _ST_DTYPES[tensors[name].dtype], 'shape': list(tensors[name].shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def st_load_model(model, filename, strict=True):
    with open(filename, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for name, e in header.items():
        if name == '__metadata__':
            continue
        a, b = e['data_offsets']
        tensors[name] = torch.frombuffer(bytearray(data[a:b]), dtype=_ST_TORCH[e['dtype']]).reshape(e['shape']).clone()
    for dropped, kept in (header.get('__metadata__') or {}).items():
        if kept in tensors and dropped not in tensors:
            tensors[dropped] = tensors[kept]
    return model.load_state_dict(tensors, strict=strict)


try:
    import safetensors.torch  # noqa: F401
except ImportError:
    st = types.ModuleType('safetensors')
    st.torch = types.ModuleType('safetensors.torch')
    st.torch.load_model, st.torch.save_model, st.torch.save_file = st_load_model, None, st_save_file
    sys.modules['safetensors'], sys.modules['safetensors.torch'] = st, st.torch
sys.path.insert(0, os.path.abspath(args.nanovlm))

import torch.optim as optim  # noqa: E402
from models.config import VLMConfig  # noqa: E402
from models.vision_language_model import VisionLanguageModel  # noqa: E402

torch.set_num_threads(args.threads)
torch.manual_seed(0)


def bench_batch(cfg, B, seed=0):
    """core/commands/bench.ts benchBatch's layout (its own seeded values)."""
    T, S, V = cfg.lm_max_length, cfg.vit_img_size, cfg.lm_vocab_size
    g = torch.Generator().manual_seed(seed)
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
    return images, input_ids, attention_mask, targets


if args.dump:
    if not args.out:
        sys.exit('--dump needs --out')
    model = VisionLanguageModel.from_pretrained(args.dump)
    model.eval()
    images, input_ids, attention_mask, targets = bench_batch(model.cfg, args.batch_dump, seed=1)
    with torch.no_grad():
        vision_out = model.vision_encoder(images)
        mp_out = model.MP(vision_out)
        tok = model.decoder.token_embedding(input_ids)
        x = torch.cat([mp_out, tok], dim=1)
        mask = torch.cat([torch.ones(images.shape[0], mp_out.shape[1], dtype=attention_mask.dtype), attention_mask], dim=1)
        hidden = model.decoder(x, mask)
        logits = model.decoder.head(hidden[:, mp_out.shape[1]:, :])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
    os.makedirs(args.out, exist_ok=True)
    st_save_file({'images': images, 'input_ids': input_ids, 'attention_mask': attention_mask, 'targets': targets}, os.path.join(args.out, 'inputs.safetensors'))
    st_save_file({'vision_out': vision_out, 'mp_out': mp_out, 'decoder_hidden': hidden, 'logits': logits, 'loss': loss.reshape(1)},
                 os.path.join(args.out, 'expected.safetensors'))
    print(f'wrote {args.out}/inputs.safetensors and expected.safetensors (loss {loss.item():.6f}, torch {torch.__version__})')
    sys.exit(0)

cfg = VLMConfig(vlm_load_backbone_weights=False)
model = VisionLanguageModel.from_pretrained(args.model) if args.model else VisionLanguageModel(cfg, load_backbone=False)
cfg = model.cfg
model.train()
B = args.batch_size
images, input_ids, attention_mask, targets = bench_batch(cfg, B)
optimizer = optim.AdamW([{'params': model.MP.parameters(), 'lr': 2e-3},
                         {'params': list(model.decoder.parameters()) + list(model.vision_encoder.parameters()), 'lr': 1e-4}])


def step():
    t0, c0 = time.perf_counter(), time.process_time()
    optimizer.zero_grad()
    _, loss = model(input_ids, images, attention_mask=attention_mask, targets=targets)
    loss.backward()
    optimizer.step()
    return {'ms': (time.perf_counter() - t0) * 1e3, 'cpu_ms': (time.process_time() - c0) * 1e3, 'loss': loss.item()}


first = step()
timed = [step() for _ in range(args.steps)]
gen = None
if args.generate:
    from kv_generate import time_kv_generate  # bench/reference/kv_generate.py
    model.eval()
    row = 1 if B > 1 else 0  # one unpadded row, as `vlm bench`
    gen = {'new_tokens': args.generate, 'kv_cache': time_kv_generate(model, input_ids[row:row + 1], images[row:row + 1], args.generate, args.gen_runs)}
res = {
    'name': 'pytorch-nanovlm-v0.1-222m', 'backend': f'torch {torch.__version__}', 'threads': torch.get_num_threads(),
    'batch_size': B, 'seq_len': cfg.lm_max_length, 'params': sum(p.numel() for p in model.parameters()),
    'first_step_ms': first['ms'], 'step_ms': [t['ms'] for t in timed], 'step_cpu_ms': [t['cpu_ms'] for t in timed],
    'peak_rss_bytes': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, 'load_avg': os.getloadavg(),
    'generate': gen,
}
print(f"PyTorch {torch.__version__}, {res['threads']} thread(s), nanoVLM v0.1 222M, batch {B}: step {timed[-1]['ms']:.0f} ms "
      f"(CPU {timed[-1]['cpu_ms']:.0f} ms), peak RSS {res['peak_rss_bytes'] / 2**20:.0f} MiB, load {res['load_avg'][0]:.1f}")
if gen:
    kv = gen['kv_cache']
    print(f"generate {args.generate} tokens with a KV cache: {kv['tokens_per_s']:.1f} tok/s (CPU {kv['cpu_ms']:.0f} ms; "
          f"same tokens as full recompute: {kv['same_tokens_as_recompute']})")
if args.json:
    with open(args.json, 'w') as f:
        json.dump(res, f, indent=2)
