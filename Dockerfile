# GPU image: NGC PyTorch brings CUDA, its own torch build and Transformer Engine (picked up automatically
# for TE layer specs and FP8). Our pinned torch/torchvision are for CPU machines, so they are skipped here.
ARG BASE_IMAGE=nvcr.io/nvidia/pytorch:25.11-py3
FROM ${BASE_IMAGE}

WORKDIR /workspace/nemo_twvlm
COPY pyproject.toml README.md ./
COPY nemo_twvlm nemo_twvlm
COPY recipes recipes
COPY conf conf
COPY data data
COPY scripts scripts

RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
print('\n'.join(d for d in deps if not d.startswith(('torch', 'torchvision'))))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && pip install --no-cache-dir --no-deps -e . \
    && python -c "import megatron.core, megatron.energon, nemo_run, nemo_twvlm.presets"

ENV PYTHONUNBUFFERED=1
