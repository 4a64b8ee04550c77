// Reading the repository's own deployment files (docker-compose.yml, ops/, Dockerfile …) in unit
// tests: parsed YAML and JSON walked with checks that name the path that is off, so a malformed
// file fails with "services.api.environment should be a mapping" rather than a TypeError.
import { existsSync, readFileSync } from 'node:fs';
import { parse } from 'yaml';

const root = new URL('../../', import.meta.url);

/** A file of the repository, by its path from the root. */
export const repoUrl = (file: string): URL => new URL(file, root);
export const readRepoFile = (file: string): string => readFileSync(repoUrl(file), 'utf8');
export const repoFileExists = (file: string): boolean => existsSync(repoUrl(file));

export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export function isObject(value: Json | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function objectAt(value: Json | undefined, path: string): JsonObject {
  if (!isObject(value)) throw new Error(`${path} should be a mapping`);
  return value;
}

export function arrayAt(value: Json | undefined, path: string): Json[] {
  if (!Array.isArray(value)) throw new Error(`${path} should be a list`);
  return value;
}

export function stringAt(value: Json | undefined, path: string): string {
  if (typeof value !== 'string' || value.trim() === '') throw new Error(`${path} should be a non-empty string`);
  return value;
}

// Compose supports YAML merge keys (<<); the yaml package resolves them only when asked.
export const readYaml = (file: string): JsonObject => objectAt(parse(readRepoFile(file), { merge: true }) as Json, file);
export const readJson = (file: string): JsonObject => objectAt(JSON.parse(readRepoFile(file)) as Json, file);

/** docker-compose.yml's services, by name. */
export function composeServices(): { readonly names: string[]; service(name: string): JsonObject; environment(name: string): Record<string, string> } {
  const services = objectAt(readYaml('docker-compose.yml')['services'], 'services');
  const service = (name: string): JsonObject => objectAt(services[name], `services.${name}`);
  return {
    names: Object.keys(services),
    service,
    /** A service's environment with every value as a string ({} when it sets none). */
    environment(name) {
      const env = service(name)['environment'];
      if (env === undefined) return {};
      return Object.fromEntries(Object.entries(objectAt(env, `services.${name}.environment`)).map(([key, value]) => [key, String(value)]));
    },
  };
}
