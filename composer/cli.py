"""``composer`` command line. User mistakes print one located message each and exit 2.

``validate``, ``render``, ``summary`` and ``schema`` never import TensorFlow or Keras.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from .blueprint.errors import BlueprintError

EXIT_USER_ERROR = 2


def _load_graph(file: str):
    from .blueprint import load_blueprint
    from .graph import build_graph

    bp, doc = load_blueprint(file)
    return build_graph(bp, doc)


def _count(n) -> str:
    return "?" if n is None else f"{n:,}"


def _table(graph) -> str:
    from tabulate import tabulate

    rows = [["features", "inputs", ", ".join(f"{k}{v[0]}" for k, v in graph.layout.inputs().items()),
             _count(graph.layout.embedding_params())]]
    for nid in graph.order:
        node = graph.nodes[nid]
        rows.append([nid, node.block.type, str(node.out), _count(node.params)])
    rows.append(["total", "", "", _count(graph.total_params)])
    return tabulate(rows, headers=["block", "type", "output", "params"], tablefmt="simple")


def cmd_validate(args) -> int:
    failed = 0
    for file in args.files:
        try:
            graph = _load_graph(file)
        except BlueprintError as exc:
            print(exc, file=sys.stderr)
            failed += 1
            continue
        for warning in graph.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"{file}: ok ({len(graph.nodes)} blocks, {len(graph.outputs)} outputs, "
              f"{graph.total_params if graph.total_params is not None else '?'} params)")
    return EXIT_USER_ERROR if failed else 0


def cmd_summary(args) -> int:
    from .losses import LossPlan

    graph = _load_graph(args.file)
    print(_table(graph))
    print()
    print(LossPlan.from_blueprint(graph.blueprint).table())
    return 0


def cmd_render(args) -> int:
    from .diagram import render

    graph = _load_graph(args.file)
    try:
        render(graph, args.output)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(f"wrote {args.output}")
    return 0


def cmd_schema(args) -> int:
    from .blueprint.schema import blueprint_model

    text = json.dumps(blueprint_model().model_json_schema(), indent=2)
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(text + "\n")
        print(f"wrote {args.output}")
    else:
        print(text)
    return 0


def cmd_build(args) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from .compiler import compile_graph

    from .losses import LossPlan

    graph = _load_graph(args.file)
    model = compile_graph(graph)
    print(_table(graph))
    print()
    print(LossPlan.from_blueprint(graph.blueprint).table())
    print(f"\nkeras model '{model.name}': inputs {[i.name for i in model.inputs]}, "
          f"outputs {list(model.output_names)}, {model.count_params()} parameters")
    if args.output:
        model.save(args.output)
        print(f"wrote {args.output}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="composer", description="Design, build and render multi-task "
                                "and multi-scenario recommendation models from YAML blueprints.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("validate", help="check blueprints (schema, references, cycles, shapes)")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.set_defaults(func=cmd_validate)
    s = sub.add_parser("summary", help="table of blocks, output shapes and parameters (no TensorFlow)")
    s.add_argument("file", metavar="FILE")
    s.set_defaults(func=cmd_summary)
    s = sub.add_parser("build", help="compile to a Keras model; -o saves it as .keras")
    s.add_argument("file", metavar="FILE")
    s.add_argument("-o", "--output", help="write the model here (e.g. model.keras)")
    s.set_defaults(func=cmd_build)
    s = sub.add_parser("render", help="draw the block graph (.svg/.png/.pdf need Graphviz; .dot always)")
    s.add_argument("file", metavar="FILE")
    s.add_argument("-o", "--output", required=True, help="X.svg, X.png, X.pdf or X.dot")
    s.set_defaults(func=cmd_render)
    s = sub.add_parser("schema", help="print the JSON Schema of the blueprint language")
    s.add_argument("-o", "--output", help="write to a file instead of stdout")
    s.set_defaults(func=cmd_schema)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except BlueprintError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
