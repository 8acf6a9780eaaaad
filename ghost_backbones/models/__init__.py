from .ghostnet import ARCHS, GhostNet

__all__ = ['ARCHS', 'GhostNet']
