"""Greedy generation with a KV cache over nanoVLM v0.1's own modules, for the PyTorch references
(bench/reference/nanovlm_small.py, nanovlm_222m.py --generate). v0.1 has no KV cache: its generate
recomputes the whole sequence per token ("Here you could implement improvements like e.g. KV
caching"). This is the method of `vlm bench` (core/generate.ts): prefill of image + prompt, then
one position per token, keys/values of earlier positions kept per block. time_kv_generate checks it
against greedy full recompute through v0.1's forward (same tokens) before timing.

Import it after the nanoVLM v0.1 checkout is on sys.path (it imports models.language_model).
"""
import math
import statistics
import time

import torch
from models.language_model import apply_rotary_pos_embd


def attend(blk, h, cos, sin, cache, causal):
    a = blk.attn
    B, T, C = h.shape
    x = blk.norm1(h)
    q = a.q_proj(x).view(B, T, a.n_heads, a.head_dim).transpose(1, 2)
    k = a.k_proj(x).view(B, T, a.n_kv_heads, a.head_dim).transpose(1, 2)
    v = a.v_proj(x).view(B, T, a.n_kv_heads, a.head_dim).transpose(1, 2)
    q, k = apply_rotary_pos_embd(q, k, cos, sin)
    if cache:
        k = torch.cat((cache[0], k), dim=2)
        v = torch.cat((cache[1], v), dim=2)
    cache[:] = [k, v]
    k = k.repeat_interleave(a.n_kv_groups, dim=1)
    v = v.repeat_interleave(a.n_kv_groups, dim=1)
    # torch 1.13 has no scaled_dot_product_attention: v0.1's manual path
    att = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(a.head_dim)
    if causal:
        att = att.masked_fill(torch.tril(torch.ones(T, T)).view(1, 1, T, T) == 0, float('-inf'))
    y = torch.softmax(att, dim=-1) @ v
    h = h + a.out_proj(y.transpose(1, 2).contiguous().view(B, T, C))
    return h + blk.mlp(blk.norm2(h))


def kv_generate(model, ids, img, n):
    """n greedy tokens for one row: ids [1, T], img [1, 3, S, S] -> [1, n]"""
    dec = model.decoder
    h = torch.cat((model.MP(model.vision_encoder(img)), dec.token_embedding(ids)), dim=1)  # [1, P, C]
    P = h.size(1)
    caches = [[] for _ in dec.blocks]
    cos, sin = dec.rotary_embd(torch.arange(P).unsqueeze(0))
    for blk, cache in zip(dec.blocks, caches):
        h = attend(blk, h, cos, sin, cache, True)
    tok = dec.head(dec.norm(h[:, -1])).argmax(-1, keepdim=True)  # [1, 1]
    out = [tok]
    for i in range(1, n):
        h = dec.token_embedding(tok)
        cos, sin = dec.rotary_embd(torch.tensor([[P + i - 1]]))
        for blk, cache in zip(dec.blocks, caches):
            h = attend(blk, h, cos, sin, cache, False)
        tok = dec.head(dec.norm(h[:, -1])).argmax(-1, keepdim=True)
        out.append(tok)
    return torch.cat(out, dim=1)


def greedy_recompute(model, ids, img, n):
    """the same tokens through v0.1's forward over the whole sequence for every token"""
    dec = model.decoder
    h = torch.cat((model.MP(model.vision_encoder(img)), dec.token_embedding(ids)), dim=1)
    out = []
    for _ in range(n):
        tok = dec.head(dec(h)[:, -1]).argmax(-1, keepdim=True)
        out.append(tok)
        h = torch.cat((h, dec.token_embedding(tok)), dim=1)
    return torch.cat(out, dim=1)


def time_kv_generate(model, ids, img, n, runs):
    """one warm-up run (checked against full recompute), then the median of `runs` timed runs"""
    timed = []
    with torch.no_grad():
        tokens = kv_generate(model, ids, img, n)  # also the warm-up run
        same = bool(torch.equal(tokens, greedy_recompute(model, ids, img, n)))
        for _ in range(runs):
            t0 = time.perf_counter()
            c0 = time.process_time()
            kv_generate(model, ids, img, n)
            timed.append(((time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3))
    ms = statistics.median(r[0] for r in timed)
    return {'tokens_per_s': n / ms * 1e3, 'ms': ms, 'cpu_ms': statistics.median(r[1] for r in timed), 'same_tokens_as_recompute': same}
