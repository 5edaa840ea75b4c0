# One image for every deployable: `crm worker`, `crm api`, `crm topics create`, `crm simulate`.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY online_models online_models
COPY feature_store feature_store
COPY stream stream
COPY agents agents
COPY api api
COPY simulator simulator
COPY crm crm
RUN pip install . && useradd --create-home crm
USER crm
ENTRYPOINT ["crm"]
CMD ["--help"]
