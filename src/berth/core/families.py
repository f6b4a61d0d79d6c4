"""Model families the measured data names, with the figures that describe them.

Parameters and forward GFLOPs per sample, each with its source. Where no source gives a figure
it is None: the features mark it missing rather than guess. GFLOPs of transformers follow the
2 x parameters x tokens rule (Kaplan et al. 2020, "Scaling Laws", C_forward ~ 2N per token) at
the sequence length the source's benchmark used, and say so.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    id: str
    domain: str  # vision | language | speech | recommendation
    params_m: float | None
    gflops_per_sample: float | None  # forward pass, one sample
    source: str


_TV = "torchvision model docs (weights IMAGENET1K_V1: params, GFLOPS)"

# fmt: off
FAMILIES: dict[str, Family] = {f.id: f for f in (
    Family("resnet50", "vision", 25.6, 4.09, _TV + ", 224x224"),
    Family("resnet152", "vision", 60.2, 11.51, _TV + ", 224x224"),
    Family("alexnet", "vision", 61.1, 0.71, _TV + ", 224x224"),
    Family("inception4", "vision", 42.7, None,
           "Szegedy et al. 2016, Inception-v4 (42.7M params); GFLOPs not given by a source here"),
    Family("resnet18", "vision", 11.7, None,
           "torchvision docs (params); trained on CIFAR-10 32x32 in Gavel and Pollux, where no "
           "source here gives its GFLOPs"),
    Family("resnet50_cifar10", "vision", 25.6, None,
           "ResNet-50 params (torchvision); CIFAR-10 input, GFLOPs not given by a source here"),
    Family("vgg16", "vision", 138.4, 15.47, _TV + ", 224x224"),
    Family("inception3", "vision", 27.2, 5.71, _TV + ", 299x299"),
    Family("yolov3", "vision", 61.9, 65.86 / 2,
           "Redmon & Farhadi 2018, YOLOv3-416: 65.86 Bn FLOPs (multiply-adds counted twice, "
           "halved here to GFLOPs of multiply-adds like torchvision's)"),
    Family("shufflenetv2", "vision", 2.3, None,
           "torchvision docs (x1.0 params); CIFAR-100 input in Zeus, GFLOPs not given"),
    Family("bert", "language", 110.0, 2 * 110.0 * 128 / 1000,
           "Devlin et al. 2019 (BERT-base 110M); 2N x 128 tokens (modelled)"),
    Family("gpt2", "language", 124.0, 2 * 124.0 * 1024 / 1000,
           "Radford et al. 2019 / Hugging Face gpt2 card (124M); 2N x 1024 tokens (modelled)"),
    # NeuSight's models, each at the one sequence length it measured (modelled 2N x tokens).
    Family("bert_large", "language", 340.0, 2 * 340.0 * 512 / 1000,
           "Devlin et al. 2019 (BERT-large 340M); 2N x 512 tokens (modelled)"),
    Family("gpt2_large", "language", 774.0, 2 * 774.0 * 1024 / 1000,
           "Radford et al. 2019 (GPT-2 large 774M); 2N x 1024 tokens (modelled)"),
    Family("gpt3_xl", "language", 1300.0, 2 * 1300.0 * 2048 / 1000,
           "Brown et al. 2020 (GPT-3 XL 1.3B); 2N x 2048 tokens (modelled)"),
    Family("gpt3_27", "language", 2700.0, 2 * 2700.0 * 2048 / 1000,
           "Brown et al. 2020 (GPT-3 2.7B); 2N x 2048 tokens (modelled)"),
    Family("opt_13", "language", 1300.0, 2 * 1300.0 * 2048 / 1000,
           "Zhang et al. 2022 (OPT-1.3B); 2N x 2048 tokens (modelled)"),
    Family("switchxl4", "language", None, None,
           "NeuSight's Switch Transformer config (mixture of experts); no figure here"),
    Family("transformer", "language", None, None,
           "Gavel's translation Transformer; no figure here"),
    Family("lm", "language", None, None, "Gavel's LSTM language model; no figure here"),
    Family("deepspeech2", "speech", None, None, "no figure here"),
    Family("recommendation", "recommendation", None, None,
           "Gavel's autoencoder recommender; no figure here"),
    Family("ncf", "recommendation", None, None, "no figure here"),
)}
# fmt: on
