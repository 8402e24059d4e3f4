#!/usr/bin/env python3
"""Parity reference for nanoVLM HEAD (issue 17): runs nanoVLM's own PyTorch code, unchanged, on a
small random model and writes every tensor a re-implementation must reproduce.

    git clone https://github.com/huggingface/nanoVLM /tmp/nanovlm-head     # HEAD 4e0c096 was used
    apt-get install python3-torch python3-torchvision python3-jinja2 python3-regex libopenblas0-pthread
    python3 bench/reference/nanovlm_head.py --nanovlm /tmp/nanovlm-head \\
        --config test/core/model/fixtures/head-tiny/overrides.json --out /tmp/head-tiny

`--config` is a JSON object of VLMConfig overrides (a file or the JSON text itself); everything else
is HEAD's default VLMConfig. The output folder gets:

  config.json, model.safetensors  VisionLanguageModel.save_pretrained (random weights, see below)
  inputs.safetensors              a batch of 2 multi-turn chat samples made by HEAD's VQADataset and
                                  VQACollator: sample 0 has 2 images, sample 1 one image split into
                                  tiles with a global view; the generation prompts; the raw images
  expected.safetensors            vision encoder out, projector out, decoder hidden states, logits,
                                  loss, every gradient, grad norm, one clipped AdamW step with train.py's
                                  param groups, greedy tokens (VisionLanguageModel.generate), HEAD's
                                  sampling distribution for given logits
  image-processor.safetensors     the split image's global view as torchvision >= 0.17 computes it
                                  (antialiased)
  packing.json                    HEAD's balanced greedy knapsack on given lengths and image counts
  tokenization.json               the chat-templated texts, their ids (this model's tokenizer and the
                                  full SmolLM2 vocabulary), the loss masks, the extra-token ids
  provenance.json                 versions, commit, seed, config

Only what needs the network, or a package Debian 12 does not ship, is stood in for, each with the
same behaviour as the real one for what nanoVLM calls:
  * `transformers.AutoTokenizer`: a byte-level BPE built from the SmolLM2 tokenizer files
    (../shared/data/tokenizers/smollm2: tokenizer.json + instruct/tokenizer_config.json, as
    HuggingFaceTB/SmolLM2-360M-Instruct: eos = pad = <|im_end|>), with HEAD's `extra_special_tokens`
    appended after the vocabulary in dict order (ids lm_base_vocab_size ..) and the `chat_template`
    rendered by jinja2 (trim_blocks, lstrip_blocks, as transformers). When `lm_base_vocab_size` is
    below 49152 (small fixtures) the vocabulary is truncated to its first lm_base_vocab_size ids: the
    merges whose result has a larger id are dropped (SmolLM2's merge i makes id 252 + i), so the text
    is cut into more, smaller pieces, exactly as that BPE with fewer merges would.
  * `safetensors.torch.save_model` / `load_model`: the real format and shared-tensor handling (of
    tensors sharing storage the name sorting first is kept; `__metadata__` maps the dropped name).
  * `einops.rearrange`: the one pattern nanoVLM uses (SplitImage).
torchvision (0.14 in Debian 12) is the real one; note that its tensor `resize` does not antialias by
default, while torchvision >= 0.17 does: the global view of a split image (GlobalAndSplitImages)
depends on that version.

Numerics: float32 on CPU, eval mode (dropout is 0 anyway), no autocast (train.py trains under
bfloat16 autocast; parity is defined in float32). PyTorch 1.13 has no scaled_dot_product_attention,
so HEAD's manual attention path runs (causal -inf mask plus the additive padding mask).
Weights: nanoVLM's own initialisation under torch.manual_seed(seed), then every parameter perturbed
(std 0.1 norm weights, 0.05 biases and position embedding, 0.12 matrices) so that the random model is
not in the "repeat the last token" regime and greedy decoding is not trivial.
"""
import argparse
import io
import json
import os
import struct
import subprocess
import sys
import types
from functools import lru_cache

p = argparse.ArgumentParser()
p.add_argument('--nanovlm', required=True, help='a nanoVLM HEAD checkout (the folder holding models/ and data/)')
p.add_argument('--config', required=True, help='JSON object of VLMConfig overrides: a file, or the JSON text')
p.add_argument('--out', required=True, help='output folder')
p.add_argument('--tokenizer', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'shared', 'data', 'tokenizers', 'smollm2'),
               help='SmolLM2 tokenizer folder (tokenizer.json, instruct/tokenizer_config.json)')
p.add_argument('--seed', type=int, default=0)
p.add_argument('--max-new-tokens', type=int, default=8)
args = p.parse_args()

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # reproducible float32 reductions

# ---- stand-in: safetensors ------------------------------------------------------------------------
_ST_DTYPES = {torch.float32: 'F32', torch.int64: 'I64', torch.int32: 'I32', torch.bool: 'BOOL', torch.uint8: 'U8'}
_ST_TORCH = {v: k for k, v in _ST_DTYPES.items()}


def st_save_file(tensors, path, metadata=None):
    header = {}
    if metadata:
        header['__metadata__'] = metadata
    blobs, off = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        b = t.numpy().tobytes()
        header[name] = {'dtype': _ST_DTYPES[t.dtype], 'shape': list(t.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def st_load_file(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == '__metadata__':
            continue
        a, b = e['data_offsets']
        dt = _ST_TORCH[e['dtype']]
        out[name] = torch.frombuffer(bytearray(data[a:b]), dtype=dt).reshape(e['shape']).clone() if b > a else torch.zeros(e['shape'], dtype=dt)
    return out, header.get('__metadata__')


def st_save_model(model, filename, metadata=None):
    sd = model.state_dict()
    groups = {}
    for name, t in sd.items():
        groups.setdefault((t.data_ptr(), t.numel()), []).append(name)
    keep, meta = {}, dict(metadata or {})
    for names in groups.values():
        names = sorted(names)
        keep[names[0]] = sd[names[0]]
        for dropped in names[1:]:
            meta[dropped] = names[0]
    st_save_file(keep, filename, meta or None)


def st_load_model(model, filename, strict=True):
    tensors, meta = st_load_file(filename)
    for dropped, kept in (meta or {}).items():
        if kept in tensors and dropped not in tensors:
            tensors[dropped] = tensors[kept]
    missing, unexpected = model.load_state_dict(tensors, strict=strict)
    return missing, unexpected


if 'safetensors' not in sys.modules:
    st = types.ModuleType('safetensors')
    st.torch = types.ModuleType('safetensors.torch')
    st.torch.save_model, st.torch.load_model = st_save_model, st_load_model
    st.torch.save_file = st_save_file
    sys.modules['safetensors'], sys.modules['safetensors.torch'] = st, st.torch

# ---- stand-in: einops.rearrange (SplitImage's pattern only) ----------------------------------------
if 'einops' not in sys.modules:
    ein = types.ModuleType('einops')

    def rearrange(x, pattern, **sizes):
        if pattern != 'b c (nh ph) (nw pw) -> (b nh nw) c ph pw':
            raise NotImplementedError(f'einops stand-in: pattern {pattern!r}')
        b, c, h, w = x.shape
        ph, pw = sizes['ph'], sizes['pw']
        nh, nw = h // ph, w // pw
        return x.reshape(b, c, nh, ph, nw, pw).permute(0, 2, 4, 1, 3, 5).reshape(b * nh * nw, c, ph, pw)

    ein.rearrange = rearrange
    sys.modules['einops'] = ein

# ---- stand-in: transformers.AutoTokenizer (SmolLM2 byte-level BPE + HEAD's extra tokens) ------------
import regex  # noqa: E402
from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: E402

GPT2_PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


@lru_cache()
def bytes_to_unicode():
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class StandInTokenizer:
    """What nanoVLM calls of a transformers fast tokenizer, for SmolLM2's BPE (see the header)."""

    def __init__(self, folder, extra_special_tokens=None, chat_template=None, base_vocab=None):
        tj = json.load(open(os.path.join(folder, 'tokenizer.json'), encoding='utf8'))
        cfg = json.load(open(os.path.join(folder, 'instruct', 'tokenizer_config.json'), encoding='utf8'))
        vocab = tj['model']['vocab']
        merges = [tuple(m.split(' ', 1)) if isinstance(m, str) else tuple(m) for m in tj['model']['merges']]
        full = len(vocab)
        self.base_vocab = base_vocab or full
        if self.base_vocab > full or self.base_vocab < 252:
            raise SystemExit(f'lm_base_vocab_size {self.base_vocab}: must be in 252..{full} for the SmolLM2 tokenizer')
        self.vocab = {t: i for t, i in vocab.items() if i < self.base_vocab}
        self.ranks = {}
        for r, (a, b) in enumerate(merges):
            if (a + b) in self.vocab and a in self.vocab and b in self.vocab:
                self.ranks[(a, b)] = r
        self.added = {a['content']: a['id'] for a in tj['added_tokens'] if a['id'] < self.base_vocab}
        self.extra = dict(extra_special_tokens or {})
        nxt = self.base_vocab
        for key, tok in self.extra.items():
            if tok not in self.added:
                self.added[tok] = nxt
                nxt += 1
            setattr(self, key, tok)
            setattr(self, key + '_id', self.added[tok])
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.id_to_token.update({i: t for t, i in self.added.items()})
        self.special_ids = set(self.added.values())
        self.chat_template = chat_template if chat_template is not None else cfg.get('chat_template')
        self.eos_token = cfg['eos_token']
        self.pad_token = cfg.get('pad_token', self.eos_token)
        self.bos_token = cfg.get('bos_token')
        self.b2u = bytes_to_unicode()
        self.u2b = {v: k for k, v in self.b2u.items()}
        alts = sorted(self.added, key=len, reverse=True)
        self.split_added = regex.compile('(' + '|'.join(regex.escape(a) for a in alts) + ')')
        self.cache = {}

    def __len__(self):
        return len(self.vocab) + len([t for t in self.added if t not in self.vocab])

    @property
    def eos_token_id(self):
        return self.added[self.eos_token]

    @property
    def pad_token_id(self):
        return self.added[self.pad_token]

    def _bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        parts = list(word)
        while len(parts) > 1:
            pairs = [(self.ranks.get((parts[i], parts[i + 1]), None), i) for i in range(len(parts) - 1)]
            pairs = [x for x in pairs if x[0] is not None]
            if not pairs:
                break
            r = min(pairs)[0]
            first, second = next((parts[i], parts[i + 1]) for rr, i in pairs if rr == r)
            out, i = [], 0
            while i < len(parts):
                if i < len(parts) - 1 and parts[i] == first and parts[i + 1] == second:
                    out.append(first + second)
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            parts = out
        ids = [self.vocab[t] for t in parts if t in self.vocab]  # bytes outside the vocabulary are dropped (no byte fallback)
        self.cache[word] = ids
        return ids

    def _encode_plain(self, text):
        ids = []
        for piece in regex.split(r'(\p{Nd})', text):  # Digits(individual_digits=True)
            if not piece:
                continue
            for w in GPT2_PATTERN.findall(piece):  # ByteLevel(add_prefix_space=False, use_regex=True)
                ids += self._bpe(''.join(self.b2u[b] for b in w.encode('utf-8')))
        return ids

    def encode(self, text, add_special_tokens=True, **_):
        ids = []
        for seg in self.split_added.split(text):
            if not seg:
                continue
            ids += [self.added[seg]] if seg in self.added else self._encode_plain(seg)
        return ids  # post_processor is null: add_special_tokens adds nothing

    def __call__(self, text, **kw):
        ids = self.encode(text)
        return {'input_ids': ids, 'attention_mask': [1] * len(ids)}

    def _render(self, messages, add_generation_prompt):
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        return env.from_string(self.chat_template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                                         eos_token=self.eos_token, bos_token=self.bos_token, pad_token=self.pad_token)

    def apply_chat_template(self, conversation, tokenize=True, add_generation_prompt=False, return_dict=False, **_):
        batched = len(conversation) > 0 and isinstance(conversation[0], (list, tuple))
        convs = conversation if batched else [conversation]
        out = []
        for c in convs:
            text = self._render(c, add_generation_prompt)
            if not tokenize:
                out.append(text)
            elif return_dict:
                ids = self.encode(text, add_special_tokens=False)
                out.append({'input_ids': ids, 'attention_mask': [1] * len(ids)})
            else:
                out.append(self.encode(text, add_special_tokens=False))
        if batched:
            if return_dict and tokenize:
                return {'input_ids': [o['input_ids'] for o in out], 'attention_mask': [o['attention_mask'] for o in out]}
            return out
        return out[0]

    def decode(self, ids, skip_special_tokens=False, **_):
        if torch.is_tensor(ids):
            ids = ids.tolist()
        text, buf = '', []
        for i in ids:
            if i in self.special_ids:
                text += bytes(self.u2b[ch] for ch in ''.join(buf)).decode('utf-8', errors='replace')
                buf = []
                if not skip_special_tokens:
                    text += self.id_to_token[i]
            else:
                buf.append(self.id_to_token[i])
        return text + bytes(self.u2b[ch] for ch in ''.join(buf)).decode('utf-8', errors='replace')

    def batch_decode(self, seqs, skip_special_tokens=False, **kw):
        return [self.decode(s, skip_special_tokens=skip_special_tokens) for s in seqs]


STANDIN = {'base_vocab': None}

if 'transformers' not in sys.modules:
    tr = types.ModuleType('transformers')

    class AutoTokenizer:
        @staticmethod
        def from_pretrained(name, use_fast=True, extra_special_tokens=None, chat_template=None, **_):
            return StandInTokenizer(args.tokenizer, extra_special_tokens, chat_template, STANDIN['base_vocab'])

    tr.AutoTokenizer = AutoTokenizer
    sys.modules['transformers'] = tr

# ---- nanoVLM HEAD, unchanged ----------------------------------------------------------------------
sys.path.insert(0, os.path.abspath(args.nanovlm))
from PIL import Image  # noqa: E402
import torch.optim as optim  # noqa: E402
from models.config import VLMConfig, TrainConfig  # noqa: E402
from models.vision_language_model import VisionLanguageModel  # noqa: E402
from models.utils import top_k_top_p_filtering  # noqa: E402
from data.processors import get_image_processor, get_tokenizer, get_image_string  # noqa: E402
from data.datasets import VQADataset  # noqa: E402
from data.collators import VQACollator  # noqa: E402

overrides = json.load(open(args.config)) if os.path.exists(args.config) else json.loads(args.config)
cfg = VLMConfig(**overrides)
STANDIN['base_vocab'] = cfg.lm_base_vocab_size
tcfg = TrainConfig()
torch.manual_seed(args.seed)
rng = np.random.default_rng(args.seed)

model = VisionLanguageModel(cfg, load_backbone=False)
tok = model.tokenizer
if tok.image_token_id >= cfg.lm_vocab_size or len(tok) > cfg.lm_vocab_size:
    raise SystemExit(f'lm_vocab_size {cfg.lm_vocab_size} is smaller than the tokenizer ({len(tok)} ids): set lm_vocab_size = lm_base_vocab_size + extra_token_amount')
with torch.no_grad():
    g = torch.Generator().manual_seed(args.seed + 1)
    for name, prm in model.named_parameters():
        if name.endswith('position_embedding') or name.endswith('.bias'):
            std = 0.05
        elif prm.dim() == 1:
            std = 0.1
        else:
            std = 0.12
        prm.add_(torch.randn(prm.shape, generator=g) * std)
model.eval()

# ---- the batch: HEAD's dataset + collator on two chat samples -----------------------------------
S = cfg.vit_img_size


def picture(h, w):
    """A smooth random picture (gradients + a few blobs + noise), uint8 RGB [h, w, 3]."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for c in range(3):
        a, b, ph = rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0, 6.28)
        img[..., c] = 0.5 + 0.3 * np.sin(a * x / 4 + b * y / 5 + ph)
    for _ in range(3):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(3, max(4, min(h, w) / 3))
        img += ((y - cy) ** 2 + (x - cx) ** 2 < r * r)[..., None] * rng.uniform(-0.4, 0.4, 3)
    img += rng.normal(0, 0.05, img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


raw_images = [picture(S, S), picture(S * 5 // 8, S * 15 // 16), picture(S * 3 // 2, S * 5 // 2)]
items = [
    {'images': [Image.fromarray(raw_images[0]), Image.fromarray(raw_images[1])],
     'texts': [{'user': 'What is in these two pictures?', 'assistant': 'Two patterns with round spots.'},
               {'user': 'Which one is brighter?', 'assistant': 'The first one, 1 of 2.'}]},
    {'images': [Image.fromarray(raw_images[2])],
     'texts': [{'user': 'Describe the wide image.', 'assistant': 'Stripes and 3 spots.'},
               {'user': 'Anything else?', 'assistant': 'No.'}]},
]
image_processor = get_image_processor(cfg.max_img_size, cfg.vit_img_size, cfg.resize_to_max_side_len)
dataset = VQADataset(items, tok, image_processor, cfg.mp_image_token_length)
samples = [dataset[i] for i in range(len(items))]
collator = VQACollator(tok, cfg.lm_max_length)
batch = collator(samples)
if len(batch['input_ids']) != len(items):
    raise SystemExit(f'a sample is longer than lm_max_length {cfg.lm_max_length} (lengths {[len(s["input_ids"]) for s in samples]}): raise lm_max_length')
input_ids, attention_mask, labels, images = batch['input_ids'], batch['attention_mask'], batch['labels'], batch['images']
images_flat = model._process_images(images, 'cpu')  # [N_tiles, 3, S, S]
tiles_per_image = [t.shape[0] for per in images for t in per]
images_per_sample = [len(per) for per in images]
grids = []
for it in items:
    for im in it['images']:
        grids.append(list(image_processor(im)[1]))

# ---- forward pieces, loss, gradients, one AdamW step -------------------------------------------
with torch.no_grad():
    vision_out = model.vision_encoder(images_flat)
    mp_out = model.MP(vision_out)
    embd = model._replace_img_tokens_with_embd(input_ids, model.decoder.token_embedding(input_ids), mp_out)
    hidden, _ = model.decoder(embd, attention_mask=attention_mask)
    logits = model.decoder.head(hidden)
model.zero_grad()
_, loss = model(input_ids, images, attention_mask=attention_mask, targets=labels)
loss.backward()
grads = {n: q.grad.detach().clone() for n, q in model.named_parameters()}
param_groups = [{'params': list(model.MP.parameters()), 'lr': tcfg.lr_mp},
                {'params': list(model.vision_encoder.parameters()), 'lr': tcfg.lr_vision_backbone},
                {'params': list(model.decoder.parameters()), 'lr': tcfg.lr_language_backbone}]
optimizer = optim.AdamW(param_groups)
all_params = [q for grp in optimizer.param_groups for q in grp['params']]
weights_before = {n: q.detach().clone() for n, q in model.named_parameters()}
grad_norm = torch.nn.utils.clip_grad_norm_(all_params, max_norm=tcfg.max_grad_norm)
optimizer.step()
after = {n: q.detach().clone() for n, q in model.named_parameters()}
with torch.no_grad():
    for n, q in model.named_parameters():
        q.copy_(weights_before[n])
optimizer.zero_grad()

# ---- generation: the first user turn with the generation prompt, left-padded ----------------------
gen_prompts = []
for i, it in enumerate(items):
    counts = [list(image_processor(im)[1]) for im in it['images']]
    msg = [{'role': 'user', 'content': get_image_string(tok, counts, cfg.mp_image_token_length) + it['texts'][0]['user']}]
    gen_prompts.append(tok.apply_chat_template(msg, tokenize=True, add_generation_prompt=True))
Lg = max(len(x) for x in gen_prompts)
gen_ids = torch.tensor([[tok.pad_token_id] * (Lg - len(x)) + x for x in gen_prompts])
gen_mask = torch.tensor([[0] * (Lg - len(x)) + [1] * len(x) for x in gen_prompts])
greedy = model.generate(gen_ids, images, attention_mask=gen_mask, max_new_tokens=args.max_new_tokens, greedy=True)

# robustness of the greedy tokens: the smallest top-1 vs top-2 log-probability gap over the steps,
# recomputed by one full forward over prompt + generated tokens (no KV cache)
with torch.no_grad():
    seq = torch.cat([gen_ids, greedy], 1)
    m = torch.cat([gen_mask, torch.ones_like(greedy)], 1)
    e = model._replace_img_tokens_with_embd(seq, model.decoder.token_embedding(seq), model.MP(model.vision_encoder(images_flat)))
    lp = torch.log_softmax(model.decoder.head(model.decoder(e, attention_mask=m)[0]), -1)[:, Lg - 1:-1]
    top2 = lp.topk(2, -1).values
    greedy_margin = float((top2[..., 0] - top2[..., 1]).min())
    eos_seen = (greedy == tok.eos_token_id).any(1)
    margins_ok = bool((lp.argmax(-1) == greedy)[~eos_seen].all()) if (~eos_seen).any() else True

# HEAD's sampling distribution (generate's non-greedy branch) on given logits: filter, then temperature
samp_logits = torch.randn(2, cfg.lm_vocab_size, generator=torch.Generator().manual_seed(args.seed + 2)) * 3
samp_probs = torch.softmax(top_k_top_p_filtering(samp_logits.clone(), top_k=50, top_p=0.9) / 0.5, dim=-1)

# the global view of the split image as torchvision >= 0.17 computes it (tensor resize antialiases
# by default there; Debian's 0.14 does not, which is what GlobalAndSplitImages gave above)
from torchvision.transforms.functional import resize as tv_resize, to_tensor  # noqa: E402
from data.custom_transforms import DynamicResize  # noqa: E402
split_k = max(range(len(grids)), key=lambda k: grids[k][0] * grids[k][1])
resized = to_tensor(DynamicResize(S, cfg.max_img_size, cfg.resize_to_max_side_len)(Image.fromarray(raw_images[split_k])))
global_aa = tv_resize(resized.unsqueeze(0), [S, S], antialias=True)[0]

# ---- write ------------------------------------------------------------------------------------
os.makedirs(args.out, exist_ok=True)
model.save_pretrained(args.out)
reloaded = VisionLanguageModel.from_pretrained(args.out)
reloaded.eval()
with torch.no_grad():
    _, loss2 = reloaded(input_ids, images, attention_mask=attention_mask, targets=labels)
assert torch.equal(loss2, loss.detach()), 'save_pretrained -> from_pretrained changes the loss'

i64 = lambda x: torch.as_tensor(x, dtype=torch.int64)
inputs = {'input_ids': i64(input_ids), 'attention_mask': i64(attention_mask), 'targets': i64(labels),
          'images': images_flat.float(), 'images_per_sample': i64(images_per_sample), 'tiles_per_image': i64(tiles_per_image),
          'image_grids': i64(grids), 'gen_input_ids': i64(gen_ids), 'gen_attention_mask': i64(gen_mask),
          'sampling_logits': samp_logits}
for k, im in enumerate(raw_images):
    inputs[f'raw_image.{k}'] = torch.from_numpy(im.astype(np.int32))  # [H, W, 3], 0..255
st_save_file(inputs, os.path.join(args.out, 'inputs.safetensors'))
expected = {'vision_out': vision_out, 'mp_out': mp_out, 'decoder_hidden': hidden, 'logits': logits,
            'loss': loss.detach().reshape(()), 'grad_norm': grad_norm.detach().reshape(()), 'greedy_tokens': i64(greedy),
            'sampling_probs': samp_probs}
expected.update({f'grad.{n}': t for n, t in grads.items()})
expected.update({f'after_adamw.{n}': t for n, t in after.items()})
st_save_file(expected, os.path.join(args.out, 'expected.safetensors'))
st_save_file({f'global_view_antialias.{split_k}': global_aa}, os.path.join(args.out, 'image-processor.safetensors'))

full_tok = StandInTokenizer(args.tokenizer, cfg.vlm_extra_tokens, cfg.lm_chat_template, None)
full_dataset = VQADataset(items, full_tok, image_processor, cfg.mp_image_token_length)
tokenization = {'extra_token_ids': {v: tok.added[v] for v in cfg.vlm_extra_tokens.values()}, 'eos_token_id': tok.eos_token_id,
                'pad_token_id': tok.pad_token_id, 'prefix_len': dataset.prefix_len, 'prefix_len_full_vocab': full_dataset.prefix_len, 'samples': []}
for i, it in enumerate(items):
    counts = [list(image_processor(im)[1]) for im in it['images']]
    messages = dataset._get_messages(it, counts)
    text = tok.apply_chat_template(messages, tokenize=False)
    ids, mask, _ = dataset._prepare_inputs_and_loss_mask(messages)
    ids_f, mask_f, _ = full_dataset._prepare_inputs_and_loss_mask(messages)
    tokenization['samples'].append({'messages': messages, 'text': text, 'input_ids': ids.tolist(), 'loss_mask': mask.int().tolist(),
                                    'labels': dataset._get_labels(ids, mask).tolist(),
                                    'input_ids_full_vocab': ids_f.tolist(), 'loss_mask_full_vocab': mask_f.int().tolist(),
                                    'labels_full_vocab': full_dataset._get_labels(ids_f, mask_f).tolist(),
                                    'generation_prompt': tok.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)})
with open(os.path.join(args.out, 'tokenization.json'), 'w') as f:
    json.dump(tokenization, f, indent=1)
    f.write('\n')

# packing: HEAD's balanced greedy knapsack (ConstantLengthDataset._balanced_greedy_knapsack, which
# ends with random.shuffle of the bins: compare the bins, not their order)
from data.advanced_datasets import ConstantLengthDataset  # noqa: E402
prng = np.random.default_rng(args.seed + 3)
packing = {'cases': []}
for L, n, max_img in ((512, 60, 18), (256, 40, 3)):
    lens = [int(x) for x in prng.integers(10, L // 2, n)]
    imgs = [int(x) for x in prng.integers(0, 5, n)]
    buf = [{'input_ids': [0] * a, 'images': [None] * b} for a, b in zip(lens, imgs)]
    groups = ConstantLengthDataset._balanced_greedy_knapsack(None, buf, L, delta=5, max_images_per_knapsack=max_img)
    packing['cases'].append({'seq_length': L, 'delta': 5, 'max_images_per_knapsack': max_img, 'lengths': lens, 'image_counts': imgs, 'groups': groups})
with open(os.path.join(args.out, 'packing.json'), 'w') as f:
    json.dump(packing, f)
    f.write('\n')

try:
    commit = subprocess.run(['git', '-C', args.nanovlm, 'rev-parse', 'HEAD'], capture_output=True, text=True).stdout.strip() or None
except OSError:
    commit = None
import torchvision  # noqa: E402
prov = {'nanovlm_commit': commit, 'torch': torch.__version__, 'torchvision': torchvision.__version__, 'numpy': np.__version__,
        'seed': args.seed, 'overrides': overrides, 'max_new_tokens': args.max_new_tokens,
        'train': {'lr_mp': tcfg.lr_mp, 'lr_vision_backbone': tcfg.lr_vision_backbone, 'lr_language_backbone': tcfg.lr_language_backbone,
                  'max_grad_norm': tcfg.max_grad_norm, 'adamw': 'torch.optim.AdamW defaults (betas 0.9/0.999, eps 1e-8, weight_decay 0.01)'},
        'sampling': {'top_k': 50, 'top_p': 0.9, 'temperature': 0.5},
        'loss': float(loss), 'grad_norm': float(grad_norm), 'sequence_lengths': [len(s['input_ids']) for s in samples],
        'tiles_per_image': tiles_per_image, 'image_grids': grids, 'greedy_tokens': greedy.tolist(),
        'greedy_min_logprob_margin': greedy_margin, 'greedy_reproduced_without_cache': margins_ok}
with open(os.path.join(args.out, 'provenance.json'), 'w') as f:
    json.dump(prov, f, indent=1)
    f.write('\n')
print(json.dumps({k: prov[k] for k in ('loss', 'grad_norm', 'sequence_lengths', 'tiles_per_image', 'image_grids', 'greedy_tokens', 'greedy_min_logprob_margin', 'greedy_reproduced_without_cache')}))
