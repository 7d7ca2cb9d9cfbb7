# Minimal image; the GPU, multi-stage and non-root setup is tracked in its own issue.
FROM python:3.11-slim
WORKDIR /app
COPY . .
RUN PYTHON=python bash scripts/install.sh
EXPOSE 8000
CMD ["gradserve", "serve", "--host", "0.0.0.0", "--port", "8000"]
