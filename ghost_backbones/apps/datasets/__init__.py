from .synthetic import CLASSES, SEG_CLASSES, SEG_PALETTE, make_synthetic, make_synthetic_classification

__all__ = ['CLASSES', 'SEG_CLASSES', 'SEG_PALETTE', 'make_synthetic', 'make_synthetic_classification']
