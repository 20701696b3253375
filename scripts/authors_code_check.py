"""Run the authors' DART code (seeder-research/DART) and `dartsim record --preset
published-code` side by side on the bundled SmolLM2 and compare them forward by forward.

The authors' code is not shipped with dartsim; point --dart-repo at a checkout (for
example the snapshot `fetch github:seeder-research/DART` brings). Their driver
(dynamicPrune.py) does not import as published (it needs a missing `lib` module and
network-only packages), so this script drives their `NeuronDefuser` and
`setup_hooks_llama` (src/neuronDefuser.py, src/hook_setup.py) with the same greedy,
KV-cached loop as dynamicPrune.py:605-637, in manual mode with `all:auto` counts and
`--knowledge_drift`, on the CPU in fp32 (their scripts run fp16 on a GPU).

What is compared: the generated tokens; the forwards at which masks come into force and
at which re-triggers fire; and, per mask epoch and layer, the kept counts and the kept
neuron sets the model actually ran with (read from the zeros in down_proj's input).

    python scripts/authors_code_check.py --dart-repo /path/to/DART --out reports/authors-code-check.md
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from dartsim.fileio import atomic_write_text
from dartsim.policies.dart import DartParams, record_dart
from dartsim.record.loop import GenerationOptions
from dartsim.record.model import load_bundled
from dartsim.record.prompts import TWO_TOPIC_PROMPT
from dartsim.record.session import encode_prompt
from dartsim.report.render import markdown_table
from dartsim.trace.schema import unpack_mask_array
from dartsim.trace.types import Trace


def run_authors(
    repo: Path, prompt_ids: list[int], tokens: int, masking_step: int, ranking: str
) -> dict[str, Any]:
    """The authors' NeuronDefuser on a fresh SmolLM2: per forward, the kept neuron set of
    every layer (None: dense), and the forwards whose drift check re-triggered."""
    sys.path.insert(0, str(repo))
    from src.hook_setup import setup_hooks_llama  # type: ignore[import-not-found]
    from src.neuronDefuser import NeuronDefuser  # type: ignore[import-not-found]

    loaded = load_bundled("cpu")
    model = loaded.model
    layers = model.config.num_hidden_layers
    width = model.config.intermediate_size
    defuser = NeuronDefuser(
        maskingStep=masking_step, per_layer_topk={i: -2 for i in range(layers)},
        ranking_method=ranking, total_prune_percent=50.0, verbose=False, device="cpu",
    )  # fmt: skip
    forward = {"index": 0}
    kept: dict[int, list[Any]] = defaultdict(lambda: [None] * layers)
    retriggers: list[int] = []
    original_defuse = defuser.defuse_neurons
    original_reset = defuser.reset_state

    def defuse(layer_name: str, activations: torch.Tensor) -> Any:
        out = original_defuse(layer_name, activations)
        layer = int(layer_name.split("_")[1])
        nonzero = torch.nonzero(out[0, -1] != 0).flatten()
        if nonzero.numel() < width:
            kept[forward["index"]][layer] = nonzero.tolist()
        return out

    def reset() -> None:
        retriggers.append(forward["index"])
        original_reset()

    defuser.defuse_neurons = defuse
    defuser.reset_state = reset
    args = argparse.Namespace(mode="manual")
    stores = [defaultdict(list) for _ in range(10)]
    with contextlib.redirect_stdout(io.StringIO()):
        setup_hooks_llama(
            model, defuser, *stores, {}, model.model.embed_tokens.weight.data, {},
            layer_topk="all:auto", knowledge_drift=True, save_activations=False, defuse_args=args,
        )  # fmt: skip
        ids = torch.tensor([prompt_ids])
        generated = []
        with torch.no_grad():
            out = model(ids, use_cache=True)
            past = out.past_key_values
            token = int(out.logits[0, -1].argmax())
            generated.append(token)
            for f in range(1, tokens):
                forward["index"] = f
                out = model(torch.tensor([[token]]), past_key_values=past, use_cache=True)
                past = out.past_key_values
                token = int(out.logits[0, -1].argmax())
                generated.append(token)
    return {"generated": generated, "kept": dict(kept), "retriggers": retriggers, "layers": layers}


def run_dartsim(prompt: str, tokens: int, masking_step: int, ranking: str) -> Trace:
    loaded = load_bundled("cpu")
    params = DartParams.preset("published-code", masking_step=masking_step, ranking=ranking)
    options = GenerationOptions(max_new_tokens=tokens, ignore_eos=True)
    trace = record_dart(loaded, prompt, params, options, None, chat_template=False).trace
    assert trace is not None
    return trace


def _epochs_of_authors(kept: dict[int, list[Any]]) -> list[tuple[int, list[Any]]]:
    """(first forward, kept sets) of each run of forwards with the same masks."""
    epochs: list[tuple[int, list[Any]]] = []
    for f in sorted(kept):
        sets = kept[f]
        # a re-trigger forward runs its last layer dense and the others with the old masks
        changed = any(k is not None and (not epochs or k != epochs[-1][1][i]) for i, k in enumerate(sets))
        if changed:
            epochs.append((f, sets))
    return epochs


def compare(authors: dict[str, Any], trace: Trace) -> str:
    ours = trace.generation.generated_ids.tolist()
    theirs = authors["generated"]
    agree = next(
        (i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), min(len(ours), len(theirs))
    )
    width = trace.width
    masks = torch.from_numpy(unpack_mask_array(trace.epochs.masks, width))
    their_epochs = _epochs_of_authors(authors["kept"])
    rows = []
    in_force = [e for e in range(masks.shape[0]) if int(trace.epochs.first_step[e]) < len(ours)]
    for e in range(max(len(in_force), len(their_epochs))):
        our_first = int(trace.epochs.first_step[e]) if e < len(in_force) else None
        their_first = their_epochs[e][0] if e < len(their_epochs) else None
        if our_first is None or their_first is None:
            rows.append([str(e), str(our_first), str(their_first), "-", "-", "-"])
            continue
        counts_equal = masks_equal = 0
        jaccard = []
        for layer in range(authors["layers"]):
            ours_set = set(torch.nonzero(masks[e, layer]).flatten().tolist())
            theirs_list = their_epochs[e][1][layer]
            theirs_set = set(theirs_list) if theirs_list is not None else set(range(width))
            counts_equal += len(ours_set) == len(theirs_set)
            masks_equal += ours_set == theirs_set
            jaccard.append(len(ours_set & theirs_set) / len(ours_set | theirs_set))
        layers = authors["layers"]
        rows.append([
            str(e), str(our_first), str(their_first), f"{counts_equal}/{layers}", f"{masks_equal}/{layers}",
            f"{sum(jaccard) / len(jaccard):.4f}",
        ])  # fmt: skip
    retriggers = trace.retriggers.step.tolist()
    return "\n".join(
        [
            f"Generated tokens equal for the first {agree} of {len(ours)}.",
            f"Re-triggers (forward index): dartsim {retriggers}, authors' code {authors['retriggers']}.",
            "",
            markdown_table(
                [
                    "mask epoch",
                    "in force from (dartsim)",
                    "in force from (authors)",
                    "kept counts equal",
                    "kept sets equal",
                    "mean Jaccard",
                ],
                rows,
            ),
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dart-repo", required=True, type=Path, help="a checkout of seeder-research/DART")
    parser.add_argument("--tokens", type=int, default=150)
    parser.add_argument("--masking-step", type=int, default=50)
    parser.add_argument("--ranking", default="max")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not (args.dart_repo / "src" / "neuronDefuser.py").is_file():
        sys.stderr.write(f"error: {args.dart_repo}: no src/neuronDefuser.py (not a DART checkout)\n")
        return 2
    loaded = load_bundled("cpu")
    prompt_ids = encode_prompt(loaded, TWO_TOPIC_PROMPT, chat_template=False)
    del loaded
    authors = run_authors(args.dart_repo, prompt_ids, args.tokens, args.masking_step, args.ranking)
    trace = run_dartsim(TWO_TOPIC_PROMPT, args.tokens, args.masking_step, args.ranking)
    text = "\n".join([
        "# dartsim's published-code preset against the authors' code",
        "",
        f"SmolLM2-135M-Instruct (fp32, CPU), the two-topic prompt without chat template ({len(prompt_ids)} "
        f"tokens), greedy, {args.tokens} tokens, masking step {args.masking_step}, ranking {args.ranking}, "
        "sparsity 0.5, `all:auto`, knowledge drift on. Made by `python scripts/authors_code_check.py "
        f"--dart-repo DART --tokens {args.tokens} --masking-step {args.masking_step}` with the authors' code "
        "at seeder-research/DART 19c4a57.",
        "",
        compare(authors, trace),
    ])  # fmt: skip
    if args.out is not None:
        atomic_write_text(str(args.out), text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
