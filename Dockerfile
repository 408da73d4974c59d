FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir '.[postgres]'
ENV PYTHONUNBUFFERED=1
EXPOSE 8080
CMD ["gunicorn", "--config", "python:scitoken_issuer.gunicorn_conf", "--bind", "0.0.0.0:8080", "scitoken_issuer.wsgi:app"]
