"""Keras 2's ``keras.preprocessing``: ``image.ImageDataGenerator`` and its iterator.

Example:
    >>> from reglab.preprocessing import image
    >>> image.ImageDataGenerator(horizontal_flip=True).affine_spec.horizontal_flip
    True
"""

from reglab.preprocessing import image

__all__ = ["image"]
