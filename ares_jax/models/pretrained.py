"""HF T5 / MM-CoT checkpoints (safetensors) <-> `MultimodalT5` parameters.

Reads `config.json` plus `model.safetensors` or a sharded `model.safetensors.index.json`.
Pickled PyTorch files are never loaded (unpickling runs arbitrary code); the error explains how
to convert them. `save_pretrained` writes the same format: HF's T5 names, MM-CoT's names for the
image fusion, and the parts neither has (the built-in task's image memory, the pixel ViT) as
`ares_jax.<path>` tensors with an `ares_jax` section in `config.json` describing the image input;
`load_pretrained` reads such a folder back bit for bit, and HF's T5 loads its text part.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Iterator

import flax.linen as nn
import jax
import numpy as np
from flax import traverse_util

from ares_jax.models.config import T5Config, VisionConfig
from ares_jax.models.model import MultimodalT5, dummy_inputs, init_params

# MM-CoT's fusion weights (torch names) -> our `fusion` module.
_FUSION_LINEARS = {"image_dense": "image_dense", "gate_dense": "gate_dense", "mha_layer.out_proj": "out"}
_OWN = "ares_jax."  # tensors of modules HF and MM-CoT lack, by their parameter path
_OWN_MODULES = ("image_memory", "vision_encoder")

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


def _unconvert(param: np.ndarray, layout: str) -> np.ndarray:
    """`_convert`'s inverse: our layout -> the torch tensor."""
    if layout == "in":
        return param.reshape(param.shape[0], -1).T
    if layout == "out":
        return param.reshape(-1, param.shape[-1]).T
    if layout == "dense":
        return param.T
    return param


def _get(tree: dict, path: tuple[str, ...]) -> np.ndarray:
    for key in path:
        tree = tree[key]
    return np.asarray(tree)


def hf_config(config: T5Config) -> dict:
    """`config.json` for `config`: HF's T5 keys (HF transformers 5 reads `tie_word_embeddings` as
    the decoder-output scaling and ties the head unless the weights hold `lm_head.weight`), plus
    the image input in an `ares_jax` section HF ignores."""
    return {
        "architectures": ["T5ForConditionalGeneration"],
        "model_type": "t5",
        "is_encoder_decoder": True,
        "vocab_size": config.vocab_size,
        "d_model": config.d_model,
        "d_kv": config.d_kv,
        "d_ff": config.d_ff,
        "num_layers": config.num_layers,
        "num_decoder_layers": config.num_decoder_layers,
        "num_heads": config.num_heads,
        "relative_attention_num_buckets": config.relative_attention_num_buckets,
        "relative_attention_max_distance": config.relative_attention_max_distance,
        "dropout_rate": config.dropout_rate,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "feed_forward_proj": config.feed_forward_proj,
        "tie_word_embeddings": config.scale_decoder_outputs,
        "scale_decoder_outputs": config.scale_decoder_outputs,
        "pad_token_id": config.pad_token_id,
        "eos_token_id": config.eos_token_id,
        "decoder_start_token_id": config.decoder_start_token_id,
        "ares_jax": {"vision": dataclasses.asdict(config.vision)},
    }


def to_hf_tensors(config: T5Config, params: dict) -> dict[str, np.ndarray]:
    """An LM-head model's params (no LoRA adapters: merge them first) -> tensors by HF name."""
    if config.lora_rank:
        raise ValueError("merge the LoRA adapters first (models.lora.merge_adapters)")
    tensors = {hf: _unconvert(_get(params, ours), layout) for hf, ours, layout in _hf_names(config)}
    if not config.tie_word_embeddings:
        tensors["lm_head.weight"] = _get(params, ("lm_head", "kernel")).T
    if "fusion" in params:
        fusion = params["fusion"]
        for hf, ours in _FUSION_LINEARS.items():
            tensors[f"{hf}.weight"] = _get(fusion, (ours, "kernel")).T
            tensors[f"{hf}.bias"] = _get(fusion, (ours, "bias"))
        names = ("query", "key", "value")
        tensors["mha_layer.in_proj_weight"] = np.concatenate([_get(fusion, (n, "kernel")).T for n in names])
        tensors["mha_layer.in_proj_bias"] = np.concatenate([_get(fusion, (n, "bias")) for n in names])
    own = {module: params[module] for module in _OWN_MODULES if module in params}
    for path, value in traverse_util.flatten_dict(own).items():
        tensors[_OWN + ".".join(path)] = np.asarray(value)
    return {name: np.ascontiguousarray(value, np.float32) for name, value in tensors.items()}


def save_pretrained(folder: str | Path, config: T5Config, params: dict) -> None:
    """Writes `config.json` and `model.safetensors` of an LM-head model into `folder`."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(hf_config(config), indent=2) + "\n")
    save_file(to_hf_tensors(config, params), str(folder / "model.safetensors"), metadata={"format": "pt"})


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


def _saved_vision(config_file: Path) -> VisionConfig | None:
    """The image input `save_pretrained` recorded in `config.json`, or None (another writer)."""
    try:
        section = json.loads(config_file.read_text()).get("ares_jax")
    except (OSError, ValueError, AttributeError):
        return None  # T5Config.from_hf_file reports an unreadable config.json
    if not isinstance(section, dict) or not isinstance(section.get("vision"), dict):
        return None
    return VisionConfig(**section["vision"])


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
    saved_vision = _saved_vision(folder / "config.json")
    if vision is None and saved_vision is not None:  # a folder save_pretrained wrote
        vision = saved_vision
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
    for name in (k for k in tensors if k.startswith(_OWN)):
        path = tuple(name[len(_OWN) :].split("."))
        if path[0] in params:
            _set(params, path, tensors[name], f"{folder}: {name}")
        used.add(name)
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
