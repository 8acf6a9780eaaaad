"""The application layer: what this repository's tools do, as functions (so that tests, the
main job and the tools share one implementation): training and testing through mmengine's
Runner, the main job, the built-in synthetic data and the dataset checks, benchmarks and model
analysis, pictures, deployment. It uses mmdet / mmseg / matplotlib / onnx where its functions
need them; the core (models, registry, weights, checkpoint reading, compat) never imports it.
"""
