"""Write a tiny random Qwen3-MoE checkpoint with a real tokenizer, for `python -m moe_serve.generate`.

    python tiny_chat_model.py --out /tmp/tiny-qwen3-moe
    moe-cluster --checkpoint=/tmp/tiny-qwen3-moe --workers=2 -- \
      python -m moe_serve.generate --checkpoint /tmp/tiny-qwen3-moe --router {router} --prompt "Once upon a time" --chat

The tokenizer is a byte-level BPE trained by the `tokenizers` package on a few sentences, with a
ChatML-style chat template; the model (transformers' Qwen3MoeForCausalLM, 4 layers, 8 experts,
top-2, the first layer dense) has random weights, so the text it generates is noise — the point is
the whole path: tokenizer, client model, router, workers, streaming. Used by scripts/demo.sh and
tests/golden/hf_client_test.py (make()).
"""
import argparse
import shutil

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

CORPUS = [
    "The router computes the gate of each token and sends it to the experts chosen for it.",
    "Experts run as worker processes on GPUs or in the memory of many CPU hosts.",
    "Once upon a time a small model learned to speak through a network of experts.",
    "The quick brown fox jumps over the lazy dog while the workers compute in parallel.",
    "Operators watch the load of every expert in Grafana and scale the workers on Kubernetes.",
] * 20
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def make(folder, seed=11):
    """Writes the checkpoint and tokenizer to `folder` (replacing it); returns (model, tokenizer)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   chat_template=CHAT_TEMPLATE)
    torch.manual_seed(seed)
    config = AutoConfig.for_model("qwen3_moe", hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                                  num_key_value_heads=2, head_dim=16, vocab_size=len(fast), num_experts=8,
                                  num_experts_per_tok=2, moe_intermediate_size=48, intermediate_size=96,
                                  mlp_only_layers=[0], tie_word_embeddings=False, eos_token_id=fast.eos_token_id,
                                  pad_token_id=fast.pad_token_id, bos_token_id=None)
    model = AutoModelForCausalLM.from_config(config).float().eval()
    with torch.no_grad():  # logits spread wide enough that greedy picks are far from ties
        model.lm_head.weight.mul_(8.0)
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder, max_shard_size="200KB")
    fast.save_pretrained(folder)
    return model, fast


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder to write (replaced)")
    args = ap.parse_args()
    make(args.out)
    print(f"tiny_chat_model: wrote a random Qwen3-MoE with a BPE tokenizer to {args.out}")
