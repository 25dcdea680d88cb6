# the web app, built with the dev dependencies (esbuild, preact) that the hub's image leaves out
FROM node:24-bookworm-slim AS web
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY . .
RUN npm run build:web

FROM node:24-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY . .
COPY --from=web /app/web/dist web/dist
ENV NODE_ENV=production DATA_DIR=/data
VOLUME /data
EXPOSE 1883 8883 8080
USER node
CMD ["node", "--import=tsx", "bin/stagehub.ts", "start"]
