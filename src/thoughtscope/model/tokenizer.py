"""A byte-level tokenizer that encodes any text, for small models trained from scratch."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

EOS_TOKEN = "<eos>"
BOS_TOKEN = "<bos>"


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins for bytes used by byte-level BPE, in byte order."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def byte_level_tokenizer(*, bos: bool = False) -> PreTrainedTokenizerFast:
    """A tokenizer with one id per byte (0-255), then ``<eos>`` (256) and, with ``bos``,
    ``<bos>`` (257), which is prepended to every encoded text like Llama's.

    Base vocabulary V = 257 (258 with ``bos``); CODI appends pad, bot and eot after it.
    """
    vocab = {ch: i for i, ch in enumerate(_byte_alphabet())}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOS_TOKEN])
    kwargs = {"eos_token": EOS_TOKEN}
    if bos:
        tok.add_special_tokens([BOS_TOKEN])
        bos_id = tok.token_to_id(BOS_TOKEN)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{BOS_TOKEN} $A", special_tokens=[(BOS_TOKEN, bos_id)]
        )
        kwargs["bos_token"] = BOS_TOKEN
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)
