"""INT8 ONNX models: onnxruntime's static quantization (QDQ, per-channel weights), calibrated on
training images preprocessed exactly as the network sees them (the config's test pipeline and
data preprocessor)."""
import copy
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F


def calibration_inputs(cfg, model, count: int, input_size) -> Iterator[np.ndarray]:
    """The first ``count`` training images as network inputs (1, 3, H, W), padded to ``input_size``."""
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DefaultScope

    from .datasets.checks import leaf_datasets
    from .deploy import test_pipeline
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['DATASETS']).DATASETS
    dataset_cfg = copy.deepcopy(next(iter(leaf_datasets(cfg.train_dataloader.dataset))))
    dataset_cfg.update(pipeline=test_pipeline(cfg), test_mode=True)
    dataset_cfg.pop('filter_cfg', None)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        dataset = registry.build(dataset_cfg)
    height, width = input_size
    for index in range(min(count, len(dataset))):
        with torch.no_grad():
            inputs = model.data_preprocessor(pseudo_collate([dataset[index]]), False)['inputs']
        inputs = F.pad(inputs, (0, width - inputs.shape[-1], 0, height - inputs.shape[-2]))
        yield inputs[..., :height, :width].numpy().astype(np.float32)


def quantize_int8(fp32_path: str, int8_path: str, inputs: Iterator[np.ndarray]) -> str:
    """Static INT8 quantization of the convolutions and matrix products (QDQ format, weights
    per channel); post-processing (NMS, top-k, argmax) stays in float."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(inputs)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {'images': batch}

    quantize_static(fp32_path, int8_path, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=['Conv', 'MatMul', 'Gemm'])
    return int8_path
