FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DEBUG=0
WORKDIR /app
# The app runs as an unprivileged user; the code and collected static files stay root-owned.
RUN groupadd --system app && useradd --system --gid app --no-create-home --home-dir /nonexistent app

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
RUN DEBUG=1 python manage.py collectstatic --noinput

USER app
EXPOSE 8000
# web (docs/operations.md); the worker runs the same image with: celery -A axiomatic worker --loglevel=INFO
ENV WEB_CONCURRENCY=3
CMD ["gunicorn", "-c", "gunicorn.conf.py", "axiomatic.wsgi:application"]
