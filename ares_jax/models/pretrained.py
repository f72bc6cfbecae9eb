"""Load HF T5 / MM-CoT checkpoints (safetensors) into `MultimodalT5` parameters.

Reads `config.json` plus `model.safetensors` or a sharded `model.safetensors.index.json`.
Pickled PyTorch files are never loaded (unpickling runs arbitrary code); the error explains how
to convert them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import flax.linen as nn
import jax
import numpy as np

from ares_jax.models.config import T5Config, VisionConfig
from ares_jax.models.model import MultimodalT5, dummy_inputs, init_params

# MM-CoT's fusion weights (torch names) -> our `fusion` module.
_FUSION_LINEARS = {"image_dense": "image_dense", "gate_dense": "gate_dense", "mha_layer.out_proj": "out"}

_CONVERT_HELP = (
    "{folder} has only PyTorch pickle weights ({name}); ares_jax reads safetensors only, because "
    "unpickling can run arbitrary code. Convert once, on a machine you trust, with:\n"
    '  python -c "from transformers import AutoModelForSeq2SeqLM as M; '
    "M.from_pretrained('{folder}').save_pretrained('{folder}')\"\n"
    "(transformers writes model.safetensors next to the .bin; MM-CoT checkpoints: load the state "
    "dict with torch.load(..., weights_only=True) and save it with safetensors.torch.save_file)."
)


def read_safetensors(folder: str | Path) -> dict[str, np.ndarray]:
    """All tensors of a HF model folder as float32 numpy arrays, by their HF names."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if single.exists():
        files = [single]
    elif index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as err:
            raise ValueError(f"{index}: not a safetensors index (needs a 'weight_map'): {err}") from err
        files = [folder / name for name in sorted(set(weight_map.values()))]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise FileNotFoundError(f"{index} names shard files that do not exist: {missing}")
    else:
        for name in ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pth"):
            if (folder / name).exists():
                raise ValueError(_CONVERT_HELP.format(folder=folder, name=name))
        raise FileNotFoundError(f"{folder}: no model.safetensors or model.safetensors.index.json")
    tensors: dict[str, np.ndarray] = {}
    for path in files:
        try:
            loaded = load_file(str(path))
        except Exception as err:  # safetensors raises its own error types
            raise ValueError(f"{path}: cannot read safetensors ({err})") from err
        tensors.update({k: np.asarray(v, np.float32) for k, v in loaded.items()})
    return tensors


def _hf_names(config: T5Config) -> Iterator[tuple[str, tuple[str, ...], str]]:
    """(HF tensor name, our param path, layout) for every T5 tensor.

    Layouts: "embed" as is; "in" a torch Linear [out, in] -> [in, heads, kv]; "out" [D, H*Dh] ->
    [heads, kv, D]; "dense" [out, in] -> [in, out].
    """
    yield "shared.weight", ("shared", "embedding"), "embed"
    for stack, n_layers in (("encoder", config.num_layers), ("decoder", config.num_decoder_layers)):
        yield (
            f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
            (stack, "relative_attention_bias", "embedding"),
            "embed",
        )
        yield f"{stack}.final_layer_norm.weight", (stack, "final_norm", "scale"), "embed"
        for i in range(n_layers):
            block, ours = f"{stack}.block.{i}.layer", (stack, f"layer_{i}")
            sublayers = [(0, "SelfAttention", "self_attention")]
            if stack == "decoder":
                sublayers.append((1, "EncDecAttention", "cross_attention"))
            for index, hf_name, name in sublayers:
                for proj in "qkv":
                    yield f"{block}.{index}.{hf_name}.{proj}.weight", (*ours, name, proj, "kernel"), "in"
                yield f"{block}.{index}.{hf_name}.o.weight", (*ours, name, "o", "kernel"), "out"
                yield f"{block}.{index}.layer_norm.weight", (*ours, f"{name}_norm", "scale"), "embed"
            ffn = len(sublayers)
            yield f"{block}.{ffn}.layer_norm.weight", (*ours, "ffn_norm", "scale"), "embed"
            projections = ("wi_0", "wi_1", "wo") if config.feed_forward_proj == "gated-gelu" else ("wi", "wo")
            for proj in projections:
                yield f"{block}.{ffn}.DenseReluDense.{proj}.weight", (*ours, "ffn", proj, "kernel"), "dense"


def _convert(weight: np.ndarray, layout: str, config: T5Config) -> np.ndarray:
    h, dh = config.num_heads, config.d_kv
    if layout == "in":
        return weight.T.reshape(weight.shape[1], h, dh)
    if layout == "out":
        return weight.T.reshape(h, dh, weight.shape[0])
    if layout == "dense":
        return weight.T
    return weight


def _set(tree: dict, path: tuple[str, ...], value: np.ndarray, source: str):
    node = tree
    for key in path[:-1]:
        node = node[key]
    expected = node[path[-1]].shape
    if tuple(value.shape) != tuple(expected):
        raise ValueError(f"{source}: shape {tuple(value.shape)} does not fit parameter {'/'.join(path)} {expected}")
    node[path[-1]] = value


def _fusion_params(tensors: dict[str, np.ndarray], d_model: int) -> dict[str, dict[str, np.ndarray]] | None:
    """MM-CoT's extra weights, in our `fusion` layout, or None when the checkpoint has none."""
    if "image_dense.weight" not in tensors:
        return None
    fusion = {}
    for hf, ours in _FUSION_LINEARS.items():
        fusion[ours] = {"kernel": tensors[f"{hf}.weight"].T, "bias": tensors[f"{hf}.bias"]}
    # torch.nn.MultiheadAttention packs q, k, v (same width) into one [3d, d] projection.
    in_weight, in_bias = tensors["mha_layer.in_proj_weight"], tensors["mha_layer.in_proj_bias"]
    for i, name in enumerate(("query", "key", "value")):
        rows = slice(i * d_model, (i + 1) * d_model)
        fusion[name] = {"kernel": in_weight[rows].T, "bias": in_bias[rows]}
    return fusion


def load_pretrained(
    path: str | Path,
    *,
    head: str = "lm",
    dtype: str = "float32",
    vision: VisionConfig | None = None,
    rng=None,
) -> tuple[MultimodalT5, dict]:
    """Reads a HF T5 (or MM-CoT) folder -> (`MultimodalT5`, float32 params).

    `vision=None` picks "features" when the checkpoint holds MM-CoT fusion weights (its feature
    width from `image_dense`) and "none" otherwise. Parameters the checkpoint lacks (a value
    head, a fresh fusion or ViT) are initialised from `rng`.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a model folder")
    tensors = read_safetensors(folder)
    if "shared.weight" not in tensors:
        raise ValueError(f"{folder}: not a T5 checkpoint (no 'shared.weight' tensor)")
    d_model = tensors["shared.weight"].shape[1]
    fusion = _fusion_params(tensors, d_model)
    if vision is None:
        vision = (
            VisionConfig(kind="features", feature_dim=fusion["image_dense"]["kernel"].shape[0])
            if fusion
            else VisionConfig()
        )
    config = T5Config.from_hf_file(
        folder / "config.json",
        dtype=dtype,
        vision=vision,
        # HF transformers 5 keeps a separate head exactly when the file stores one.
        tie_word_embeddings="lm_head.weight" not in tensors,
    )
    model = MultimodalT5(config, head=head)
    # Shapes only: the checkpoint fills most leaves, so nothing is initialised unless it is missing.
    params = nn.unbox(jax.eval_shape(lambda: model.init(jax.random.key(0), **dummy_inputs(config)))["params"])

    used = set()
    for hf_name, ours, layout in _hf_names(config):
        if hf_name not in tensors:
            raise ValueError(f"{folder}: tensor {hf_name!r} missing for parameter {'/'.join(ours)}")
        _set(params, ours, _convert(tensors[hf_name], layout, config), f"{folder}: {hf_name}")
        used.add(hf_name)
    if head == "lm" and not config.tie_word_embeddings:
        _set(params, ("lm_head", "kernel"), tensors["lm_head.weight"].T, f"{folder}: lm_head.weight")
    if "lm_head.weight" in tensors:
        used.add("lm_head.weight")
    if fusion is not None and "fusion" in params:
        for name, leaves in fusion.items():
            for leaf, value in leaves.items():
                _set(params, ("fusion", name, leaf), value, f"{folder}: fusion {name}.{leaf}")
    # Fusion weights are known even when the caller chose a text-only model.
    used.update(k for k in tensors if k.startswith(("image_dense.", "gate_dense.", "mha_layer.")))
    # Copies of the shared embedding that older checkpoints store.
    used.update(k for k in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight") if k in tensors)
    unused = sorted(set(tensors) - used)
    if unused:
        raise ValueError(
            f"{folder}: tensors this model has no place for: {unused[:8]}{' ...' if len(unused) > 8 else ''}"
        )
    # Parameters the checkpoint lacks (value head, a fresh fusion or ViT) come from a random init.
    is_missing = lambda leaf: isinstance(leaf, jax.ShapeDtypeStruct)  # noqa: E731
    if any(map(is_missing, jax.tree_util.tree_leaves(params))):
        fresh = init_params(model, rng if rng is not None else jax.random.key(0))
        params = jax.tree_util.tree_map(lambda leaf, new: new if is_missing(leaf) else leaf, params, fresh)
    return model, jax.tree_util.tree_map(jax.numpy.asarray, params)
