"""Baseline for the check benchmark: load each spec with PyYAML and validate the agent
document with a pydantic model, as the OpenAgentSpec Python reference server does.

Prints one line per loader: `<loader> specs/s=<rate> ...`.
"""
import sys
import time
from pathlib import Path
from typing import Dict, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict


class Restriction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    require_review: Optional[str] = None
    assertion: Optional[str] = None


class Capability(BaseModel):
    model_config = ConfigDict(extra="forbid")
    collect_results: bool = True
    user_identity: bool = True
    static_identity: Optional[str] = None
    input_restriction: Optional[Restriction] = None
    output_restriction: Optional[Restriction] = None


class Guardrail(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tool_name: str
    assertion: Optional[str] = None


class Guardrails(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: Optional[Guardrail] = None
    output: Optional[Guardrail] = None


class Lifespan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    retain_memory: Optional[bool] = None
    short_circuit: Optional[int] = None


class Agent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["openagentspec:v1/agent"]
    name: str
    description: str
    intent: str
    owner: str
    capabilities: Dict[str, Capability] = {}
    guardrails: Optional[Guardrails] = None
    exposes: Dict[str, str] = {}
    lifespan: Optional[Lifespan] = None


def run(loader_name, loader, texts):
    best = None
    for _ in range(3):
        started = time.perf_counter()
        for text in texts:
            for document in yaml.load_all(text, Loader=loader):
                if document.get("kind") == "openagentspec:v1/agent":
                    Agent.model_validate(document)
        elapsed = time.perf_counter() - started
        best = elapsed if best is None else min(best, elapsed)
    print(f"{loader_name} specs/s={len(texts) / best:.0f} seconds={best:.3f}")


def main():
    corpus = Path(sys.argv[1])
    texts = [path.read_text() for path in sorted(corpus.glob("*.yaml"))]
    run("pyyaml-SafeLoader+pydantic", yaml.SafeLoader, texts)
    if getattr(yaml, "CSafeLoader", None):
        run("pyyaml-CSafeLoader+pydantic", yaml.CSafeLoader, texts)


if __name__ == "__main__":
    main()
