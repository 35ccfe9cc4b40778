"""Model spec loading: a model named on the command line (``file.py:name``, ``package.module:name``,
``hf:ClassName``) built, and its ``--input`` shapes parsed."""

from fxcost.loading.specs import load_model, parse_dtype, parse_inputs, parse_kv, parse_shape

__all__ = ["load_model", "parse_dtype", "parse_inputs", "parse_kv", "parse_shape"]
