"""The built-in multimodal task: questions about a rendered grid of coloured shapes."""

from ares_jax.data.shapes.scene import Scene, Shape, png_bytes, random_scene, read_scene, render, save_png
from ares_jax.data.shapes.task import QUESTION_KINDS, ShapesTaskConfig, make_dataset, make_problem, make_split
