"""A tiny random BERT (and its WordPiece tokenizer) built in code, for fast offline tests."""
from __future__ import annotations

from pathlib import Path

WORDS = (
    "the a an is was it this that film movie good bad great awful fine not very and or of to in on with "
    "for what how why can i you do does be are best way learn how old when where who which "
    "man woman dog cat playing running grass street two black white people city news killed attack "
    "talks china us love hate boring fun plot acting story ending . , ? ' ! - s"
).split()


def make_tiny_base(directory: Path, layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """Write a randomly initialised BertModel + fast tokenizer into ``directory``; return it."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    letters = list("abcdefghijklmnopqrstuvwxyz0123456789")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(WORDS)) + letters + ["##" + c for c in letters]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True, model_max_length=64)
    tok.save_pretrained(str(directory))
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=2 * hidden, max_position_embeddings=64, type_vocab_size=2)
    BertModel(cfg).save_pretrained(str(directory))
    return directory
