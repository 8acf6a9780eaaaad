from .synthetic import CLASSES, SEG_CLASSES, SEG_PALETTE, make_synthetic

__all__ = ['CLASSES', 'SEG_CLASSES', 'SEG_PALETTE', 'make_synthetic']
