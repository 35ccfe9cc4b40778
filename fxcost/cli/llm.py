"""``fxcost llm``: what serving a causal language model costs: prefill, decode per token, the KV
cache, active parameters, memory, and a roofline estimate on a named device."""

from __future__ import annotations

import argparse

from fxcost.cli import options

NAME = "llm"
ORDER = 8
SUMMARY = "serving costs of a causal LM: prefill, decode per token, KV cache, roofline"
DESCRIPTION = ("Analyze a causal language model as it serves: the prefill over the prompt, one decode step at the first "
               "and last context with the model's own KV cache passed in, the total over every step, the cache's bytes, "
               "total and active parameters, and with --device the time each step takes at best on that device.")
EPILOG = """\
examples:
  fxcost llm hf:LlamaForCausalLM --prompt 512 --generate 128 --dtype bfloat16
      Llama-2-7B's architecture (LlamaConfig() defaults): KV cache per token, decode MACs at 512 and 639
  fxcost llm hf:LlamaForCausalLM --prompt 2048 --generate 256 --batch 8 --dtype bfloat16 --device h100
      the roofline estimate: prefill seconds, decode ms per token, tokens/s at batch 8
  fxcost llm hf:MixtralForCausalLM --prompt 128 --generate 16 --dtype bfloat16
      a mixture of experts: total and active parameters per token
  fxcost llm hf:GPT2LMHeadModel --prompt 128 --generate 32 --last-logits -f json
      only the last position's logits in the prefill, as generate asks; the JSON contract
  fxcost llm hf:LlamaForCausalLM --prompt 4096 --generate 1 --device my_gpu.toml
      a device of your own: name, bandwidth_bytes_s and a [peak_flops] table (docs/commands/llm.md)

devices: h100, h200, a100-80g, l4, mi300x, cpu (datasheet figures, cited in fxcost/counting/devices.py)
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    options.add_model(p)
    g = p.add_argument_group("serving")
    g.add_argument("--prompt", type=options.integer(1, 2**31 - 1), required=True, metavar="P", help="tokens in each prompt (the prefill)")
    g.add_argument("--generate", type=options.integer(1, 2**31 - 1), required=True, metavar="G", help="tokens generated after it (decode steps)")
    g.add_argument("--batch", type=options.integer(1, 2**31 - 1), default=1, metavar="B", help="sequences served at once (default 1)")
    g.add_argument("--kv-dtype", metavar="DTYPE", default=None,
                   help="the KV cache's dtype, if not the model's (the cache's bytes scaled by the item size)")
    g.add_argument("--device", metavar="NAME", default=None,
                   help="a roofline estimate on a device: h100, h200, a100-80g, l4, mi300x, cpu, or a profile.toml")
    g.add_argument("--fit", metavar="SIZE", default=None,
                   help="the largest batch whose memory fits SIZE (80GiB, 24GB): weights + KV cache at prompt + generate "
                        "+ the larger peak activation of prefill and decode, each measured")
    g.add_argument("--last-logits", action="store_true",
                   help="the prefill computes the last position's logits only (logits_to_keep=1, as generate does)")
    options.add_output(p)


def run(args: argparse.Namespace) -> int:
    from fxcost.pytorch.llm import llm

    options.torch_spec(args)
    options.check_output(args.output, args)
    model, name = options.load(args.spec, args)
    with options.progress(f"analyzing {name} as it serves ...") as say:
        report = llm(model, args.prompt, args.generate, batch=args.batch, dtype=args.dtype, kv_dtype=args.kv_dtype,
                     device_name=args.device, last_logits=args.last_logits, name=name, progress=say, fit=args.fit)
    options.emit(report, args)
    return 0
