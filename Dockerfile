# Runtime image for the flash-sale service. api, worker and migrate all run from it; the
# TypeScript runs through tsx, so there is no build step.
FROM node:20-slim

ENV NODE_ENV=production
WORKDIR /app

# Dependencies first, so source edits do not invalidate this layer. tsx is a runtime dependency.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

COPY tsconfig.json ./
COPY src ./src
COPY lua ./lua
COPY migrations ./migrations

# The files stay root-owned (read-only to the app); the process runs as the image's `node` user.
USER node

EXPOSE 3000 9464 9465
CMD ["npm", "start"]
