"""A real text on every machine with Python 3.11, and a small GPT's loop (notebook 09).

    corpus = python_sources()                       # the standard library's own sources, as bytes
    model = TinyGPT()                                # a decoder-only transformer over bytes
    fit_language_model(model, corpus, steps=2000)    # AdamW on random windows of the training split
    evaluation = perplexity(model, corpus, "test")   # exp of the mean loss, with its interval
    start = gpt_baseline(profile, device=device)      # the notebook's model: trained once, then cached

Why this corpus. Notebook 09 needs real text that installs offline; the top-level modules of
Python's standard library (Lib/*.py, 168 files and 4.7 MB in Python 3.11.7) are on every
machine that runs the course, need no download, and are real language (code and English
docstrings). Tokens are bytes (a vocabulary of 256). The files are read in name order and
split by position: the first 90% train, the next 5% validation, the last 5% test. The Python
version and the SHA-256 of the bytes identify the corpus; another Python's library is another
corpus, and `python_sources` says so.
"""

from __future__ import annotations

import hashlib
import math
import platform
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .device import autocast, autocast_dtype
from .uncertainty import Ratio

SPLITS = {"train": (0.0, 0.9), "val": (0.9, 0.95), "test": (0.95, 1.0)}
PINNED = {"3.11.7": "2e31e854ce7c5a39"}  # Python version: the first 16 hex digits of the corpus's SHA-256
MIN_FILES = 100  # fewer: the library's sources are missing (a Python installed without them)


@dataclass
class TextCorpus:
    """Bytes as a uint8 tensor, with what identifies them."""

    tokens: torch.Tensor
    python_version: str
    sha256: str
    files: int

    def split(self, name: str) -> torch.Tensor:
        if name not in SPLITS:
            raise ValueError(f"a split is one of {', '.join(SPLITS)}; got {name!r}")
        low, high = SPLITS[name]
        return self.tokens[round(low * len(self.tokens)):round(high * len(self.tokens))]

    def windows(self, name: str, length: int, count: int | None = None) -> torch.Tensor:
        """Consecutive non-overlapping windows of `length` + 1 bytes of a split (inputs and the
        byte after each), the first `count` of them (all by default)."""
        split = self.split(name)
        whole = (len(split) - 1) // length
        count = whole if count is None else min(count, whole)
        if count < 1:
            raise ValueError(f"the {name} split ({len(split):,} bytes) holds no window of {length + 1} bytes")
        starts = torch.arange(count, device=split.device) * length
        return split[starts[:, None] + torch.arange(length + 1, device=split.device)].long()

    def batch(self, name: str, batch_size: int, length: int, generator: torch.Generator) -> torch.Tensor:
        """`batch_size` windows of `length` + 1 bytes at random places of a split."""
        split = self.split(name)
        starts = torch.randint(0, len(split) - length - 1, (batch_size,), generator=generator).to(split.device)
        return split[starts[:, None] + torch.arange(length + 1, device=split.device)].long()


def python_sources(device: torch.device | str = "cpu") -> TextCorpus:
    """The corpus: Lib/*.py of the running Python, in name order. Refused, saying what to do,
    when the library's sources are missing; a note when this Python's corpus is not the pinned one."""
    library = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(library.glob("*.py"))
    if len(files) < MIN_FILES:
        raise FileNotFoundError(
            f"notebook 09 reads the sources of Python's standard library, but {library} holds {len(files)} .py "
            f"files (at least {MIN_FILES} expected): this Python was installed without its sources. Install a "
            f"full Python 3.11 (python.org, pyenv, or Debian's python3.11 package, not only python3.11-minimal) "
            f"and run `make setup` with it")
    data = b"".join(path.read_bytes() for path in files)
    digest = hashlib.sha256(data).hexdigest()
    version = platform.python_version()
    if PINNED.get(version) not in (None, digest[:16]) or version not in PINNED:
        print(f"note: the corpus is Python {version}'s library ({digest[:16]}), not the pinned one "
              f"({', '.join(f'{v}: {d}' for v, d in PINNED.items())}): numbers are not comparable with the reference run")
    tokens = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device)
    return TextCorpus(tokens, version, digest, len(files))


# ---------------------------------------------------------------- a small GPT


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x):
        batch, tokens, width = x.shape
        q, k, v = self.qkv(x).view(batch, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        mixed = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(mixed.transpose(1, 2).reshape(batch, tokens, width))


class Block(nn.Module):
    """Pre-norm: x + attention(norm(x)), then x + MLP(norm(x)) with a 4x wide GELU MLP."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attention = CausalSelfAttention(width, heads)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x):
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyGPT(nn.Module):
    """A decoder-only transformer over bytes: token and learned position embeddings, `layers`
    pre-norm blocks, a final LayerNorm and an untied output layer (the embedding is not reused,
    so every Linear of the blocks and the head are separate weights to prune)."""

    def __init__(self, layers: int = 4, width: int = 128, heads: int = 4, context: int = 128, vocabulary: int = 256):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} must be a multiple of heads {heads}")
        self.context = context
        self.embedding = nn.Embedding(vocabulary, width)
        self.position = nn.Parameter(torch.zeros(1, context, width))
        self.blocks = nn.Sequential(*(Block(width, heads) for _ in range(layers)))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocabulary)
        nn.init.normal_(self.position, std=0.02)

    def forward(self, tokens):
        if tokens.shape[1] > self.context:
            raise ValueError(f"at most {self.context} tokens of context, got {tokens.shape[1]}")
        x = self.embedding(tokens) + self.position[:, :tokens.shape[1]]
        return self.head(self.norm(self.blocks(x)))

    def block_linears(self) -> list[str]:
        """The Linear layers of the blocks, in forward order: what one-shot sparsity prunes."""
        return [name for name, module in self.named_modules() if name.startswith("blocks.") and isinstance(module, nn.Linear)]


def fit_language_model(model: TinyGPT, corpus: TextCorpus, steps: int, batch_size: int = 32, lr: float = 3e-3,
                       seed: int = 0, progress: bool = True) -> list[float]:
    """AdamW on random windows of the training split, the rate warmed up over the first 5% of
    the steps and decayed linearly to zero; returns the loss of every step."""
    from tqdm.auto import tqdm

    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.95))
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (steps - step) / (steps - warmup + 1))))
    device = next(model.parameters()).device
    scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype(device) == torch.float16)
    model.train()
    losses = []
    for _ in tqdm(range(steps), desc="training the small GPT", disable=not progress):
        window = corpus.batch("train", batch_size, model.context, generator).to(device)
        with autocast(device):  # mixed precision on CUDA, full precision elsewhere
            loss = F.cross_entropy(model(window[:, :-1]).flatten(0, 1).float(), window[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        schedule.step()
        losses.append(loss.item())
    model.eval()
    return losses


@dataclass(frozen=True)
class Perplexity:
    """exp(mean loss per byte) over evaluation windows, with the 95% interval of the mean over
    the windows (each window's mean loss one observation), and the per-window losses."""

    value: float
    low: float
    high: float
    window_losses: torch.Tensor

    def __str__(self) -> str:
        return f"{self.value:.3f} ({self.low:.3f}-{self.high:.3f})"


@torch.no_grad()
def perplexity(model: nn.Module, corpus: TextCorpus, split: str = "val", windows: int | None = None,
               batch_size: int = 64) -> Perplexity:
    """The model's perplexity on consecutive windows of `split` (each byte predicted from the
    bytes before it in its window)."""
    context = model.context
    data = corpus.windows(split, context, windows).to(next(model.parameters()).device)
    was_training = model.training
    model.eval()
    losses = []
    for start in range(0, len(data), batch_size):
        window = data[start:start + batch_size]
        loss = F.cross_entropy(model(window[:, :-1]).transpose(1, 2), window[:, 1:], reduction="none")
        losses.append(loss.mean(1).cpu())
    model.train(was_training)
    return _with_interval(torch.cat(losses).double())


def perplexity_ratio(a: Perplexity, b: Perplexity) -> Ratio:
    """a / b with the 95% interval of the mean of the paired per-window loss differences (exp of
    it), over the windows both were measured on."""
    if a.window_losses.shape != b.window_losses.shape:
        raise ValueError("a ratio pairs the same windows: measure both perplexities on the same split and count")
    paired = _with_interval(a.window_losses - b.window_losses)
    return Ratio(paired.value, paired.low, paired.high, digits=3)


def _with_interval(window_losses: torch.Tensor) -> Perplexity:
    mean = window_losses.mean().item()
    half = 1.96 * window_losses.std().item() / math.sqrt(len(window_losses)) if len(window_losses) > 1 else float("nan")
    return Perplexity(math.exp(mean), math.exp(mean - half), math.exp(mean + half), window_losses)


def ngram_perplexity(corpus: TextCorpus, order: int, split: str = "val", context: int = 128,
                     windows: int | None = None) -> Perplexity:
    """A unigram (order 1) or bigram (order 2) byte model counted on the training split, with
    add-one smoothing, on the same windows as `perplexity`: what the GPT must beat."""
    if order not in (1, 2):
        raise ValueError(f"order is 1 (unigram) or 2 (bigram); got {order!r}")
    train = corpus.split("train").long().cpu()
    data = corpus.windows(split, context, windows).cpu()
    if order == 1:
        counts = torch.bincount(train, minlength=256).double() + 1
        log_p = (counts / counts.sum()).log()[data[:, 1:]]
    else:
        counts = torch.bincount(train[:-1] * 256 + train[1:], minlength=256 * 256).double().view(256, 256) + 1
        log_p = (counts / counts.sum(1, keepdim=True)).log()[data[:, :-1], data[:, 1:]]
    return _with_interval(-log_p.mean(1))


@dataclass
class LanguageBaseline:
    model: TinyGPT
    config: dict
    losses: list[float]  # the training loss of every step
    loaded: bool  # True when it came from the checkpoint cache


def gpt_baseline(profile, corpus: TextCorpus | None = None, *, seed: int = 0, device: torch.device | str = "cpu",
                 progress: bool = True) -> LanguageBaseline:
    """Notebook 09's dense model: a TinyGPT trained for `profile.gpt_steps` steps on the corpus
    (128 wide below the papers' width, 256 at it), from the checkpoint cache when it holds
    exactly this configuration, else trained now and saved."""
    from .train import cached_training

    corpus = corpus or python_sources()
    config = dict(format=1, model="tinygpt", dataset=f"python-{corpus.python_version}-{corpus.sha256[:16]}",
                  layers=4, width=256 if profile.width >= 1 else 128, heads=4, context=128,
                  steps=profile.gpt_steps, batch_size=32, lr=3e-3, seed=seed)

    def build():
        torch.manual_seed(seed)
        return TinyGPT(config["layers"], config["width"], config["heads"], config["context"])

    def train(model):
        return dict(losses=fit_language_model(model.to(corpus.tokens.device), corpus, config["steps"],
                                              config["batch_size"], config["lr"], seed, progress))

    model, record, loaded = cached_training(config, build, train)
    return LanguageBaseline(model.to(device).eval(), config, record["losses"], loaded)
