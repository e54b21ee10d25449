"""Reproducible training of everything BrainAge ships, one module per thing trained.

- :mod:`.data`: readers of the training sets (Cam-CAN, IXI) and shared helpers
- :mod:`.augmentation`: augmentation of training crops (TorchIO and domain randomisation)
- :mod:`.checkpoints`: resumable checkpoints without pickle
- :mod:`.segmentation`: the ResUNet (``brainage train-segmentation``)
- :mod:`.template`: the registration template and tissue intensity landmarks
- :mod:`.features`: the feature cache the age models learn from
- :mod:`.cnn`: approach B's CNN (``brainage train-cnn``)
- :mod:`.age_model`: approach A, bias correction and the ensemble (``brainage train-age-model``)
- :mod:`.tissue_definition`: the map to DLMUSE's tissues (``brainage train-tissue-definition``)
- :mod:`.thick_slices`: the ensemble's weights for thick-slice scans (``brainage train-thick-slice-weights``)

Every setting is logged next to what it trains, so that one command reproduces it.
"""
from .age_model import age_metrics, candidate_regressors, fit_age_model
from .augmentation import (acquisition_transform, augment_batch, degrade_image, gaussian_blur,
                           random_crops, random_thick_slices, synthesize_from_labels)
from .cnn import CNNConfig, train_cnn, training_partition
from .data import (camcan_paths, dice_scores, load_camcan_volumes, read_camcan_subjects,
                   read_dlmuse_tissues, seed_everything)
from .features import REGIONAL_CELLS, ixi_model_space, model_space_features, split_validation
from .segmentation import SegmentationConfig, dice_loss, train_segmentation
from .template import build_template, tissue_intensity_landmarks
from .tissue_definition import dlmuse_case, fit_tissue_definition
