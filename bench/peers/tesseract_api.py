# Tesseract API for the benchmark model (after tesseract_core's JAX template), served without
# Docker from the Tesseract environment:
#   TESSERACT_API_PATH=.../tesseract_api.py tesseract-runtime serve --host 127.0.0.1 --port 8001
import os
import sys
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import peer_model  # noqa: E402

import equinox as eqx  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from tesseract_core.runtime import Array, Differentiable, Float64  # noqa: E402
from tesseract_core.runtime.jax_recipes import (  # noqa: E402
    jax_abstract_eval,
    jax_apply,
    jax_jacobian,
    jax_jvp,
    jax_vjp,
)

F, _, _ = peer_model.jax_functions()


class InputSchema(BaseModel):
    x: Differentiable[Array[(None, 8), Float64]]
    w: Differentiable[Array[(4866,), Float64]]


class OutputSchema(BaseModel):
    y: Differentiable[Array[(None, 2), Float64]]


@eqx.filter_jit
def apply_jit(inputs: dict) -> dict:
    return {"y": F(inputs["w"], inputs["x"])}


def apply(inputs: InputSchema) -> OutputSchema:
    return OutputSchema(**jax_apply(apply_jit, inputs))


def jacobian(inputs: InputSchema, jac_inputs: set[str], jac_outputs: set[str]):
    return jax_jacobian(apply_jit, inputs, jac_inputs, jac_outputs)


def jacobian_vector_product(inputs: InputSchema, jvp_inputs: set[str], jvp_outputs: set[str],
                            tangent_vector: dict[str, Any]):
    return jax_jvp(apply_jit, inputs, jvp_inputs, jvp_outputs, tangent_vector)


def vector_jacobian_product(inputs: InputSchema, vjp_inputs: set[str], vjp_outputs: set[str],
                            cotangent_vector: dict[str, Any]):
    return jax_vjp(apply_jit, inputs, vjp_inputs, vjp_outputs, cotangent_vector)


def abstract_eval(abstract_inputs):
    return jax_abstract_eval(apply_jit, abstract_inputs)
