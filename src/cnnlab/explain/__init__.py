"""Why did the model say that, and what does each filter look for: explanations as arrays.

    from cnnlab.explain import saliency, grad_cam, occlusion, top_patches
    maps = grad_cam(model.eval(), images, "relu2")          # (N, H, W)

Pure functions from a model (in eval mode, made of nn.Sequential containers, as every model
of `cnnlab.models`) and arrays to arrays; the model is never changed. Layers are named as
`cnnlab summary` names them ("conv2", "relu2", "maxpool2", ...).

- attribution: saliency (Simonyan et al. 2014), grad_cam (Selvaraju et al. 2017), occlusion
  (Zeiler & Fergus 2014), and resize_bilinear (torch's interpolate, align_corners=False).
- patches: top_patches, a channel's most activating image regions (Zeiler & Fergus 2014),
  each its exact receptive field; top_patches_per_channel, every channel's in one pass;
  crop_patches, the regions cut out for display.
- visualise: feature_visualisation by regularised gradient ascent (Olah et al. 2017).
- split: the model cut in two at a named layer, to read the layer's output (A) and
  differentiate with respect to it (d score / d A) without hooks.
"""

from cnnlab.explain.attribution import (
    grad_cam,
    occlusion,
    occlusion_masks,
    resize_bilinear,
    saliency,
)
from cnnlab.explain.patches import crop_patches, top_patches, top_patches_per_channel
from cnnlab.explain.split import Split, layer_activations, layer_gradient, split_at
from cnnlab.explain.visualise import feature_visualisation, gaussian_blur

__all__ = [
    "Split",
    "crop_patches",
    "feature_visualisation",
    "gaussian_blur",
    "grad_cam",
    "layer_activations",
    "layer_gradient",
    "occlusion",
    "occlusion_masks",
    "resize_bilinear",
    "saliency",
    "split_at",
    "top_patches",
    "top_patches_per_channel",
]
