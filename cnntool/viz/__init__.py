"""Figures from runs, checkpoints and data sets (matplotlib, Agg backend: no display needed).

Each figure is one library function that writes PNG file(s) and returns their paths; `cnntool viz`
only parses options and calls them. Importing ``cnntool.viz`` itself imports nothing heavy: the
submodules import matplotlib (and switch it to Agg) when they are used.

    from cnntool.viz.curves import plot_curves          # train/val curves, several runs, seed bands
    from cnntool.viz.confusion import plot_confusion    # confusion matrix (counts or row-normalised)
    from cnntool.viz.predictions import plot_predictions, plot_examples
    from cnntool.viz.dataset import plot_dataset, plot_augmentations
    from cnntool.viz.filters import plot_filters
    from cnntool.viz.features import plot_feature_maps
    from cnntool.viz.cam import CAM, GradCAM, plot_cam
    from cnntool.viz.saliency import guided_backprop, vanilla_gradient, plot_saliency
    from cnntool.viz.summary import model_summary       # per-layer shapes, parameters, MACs (no figure)
"""
