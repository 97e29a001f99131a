"""Hand-designed image features: HOG, colour histograms, raw pixels, polar resampling.

Pure functions from image batches to (N, D) feature arrays, and FeaturePipeline, which
concatenates and standardises them for a linear classifier. NumPy only.
"""

from cnnlab.features.color import color_histogram, rgb_to_hue
from cnnlab.features.hog import hog, hog_output_size
from cnnlab.features.pipeline import FEATURES, FeaturePipeline
from cnnlab.features.transforms import as_float_images, polar_coordinates, raw_pixels

__all__ = [
    "FEATURES",
    "FeaturePipeline",
    "as_float_images",
    "color_histogram",
    "hog",
    "hog_output_size",
    "polar_coordinates",
    "raw_pixels",
    "rgb_to_hue",
]
