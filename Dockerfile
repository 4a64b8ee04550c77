# Image for the flash-sale service; api, worker and migrate all run from it. Two stages: the
# first compiles TypeScript with the dev dependencies, the second ships only the compiled
# JavaScript and the production dependencies, so nothing transpiles at start-up.

# --- build: src/ → dist/ (`npm run build`, tsconfig.build.json) -----------------------------
FROM node:20-slim AS build
WORKDIR /app

COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# --- runtime ----------------------------------------------------------------------------------
FROM node:20-slim

ENV NODE_ENV=production
# Stack traces name the TypeScript lines (dist/ carries source maps) for every node in the image.
ENV NODE_OPTIONS=--enable-source-maps
WORKDIR /app

# Dependencies first, so source edits do not invalidate this layer.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# dist/ sits beside lua/ and migrations/ as in the repository: the compiled code finds them
# relative to its own location (../../lua/ from dist/stock/).
COPY --from=build /app/dist ./dist
COPY lua ./lua
COPY migrations ./migrations

# The files stay root-owned (read-only to the app); the process runs as the image's `node` user.
USER node

EXPOSE 3000 9464 9465
# Node itself is PID 1's child (compose sets init: true) and receives SIGTERM directly, not via npm.
CMD ["node", "dist/main.js", "all"]
