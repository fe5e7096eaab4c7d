/**
 * How the SaaS backend calls sensor-billing's /v1 API, type-checked in CI against the types
 * `npm run generate` makes from the committed spec (docs/openapi.json): `npm run check`.
 *
 * Adding an endpoint to the API: regenerate docs/openapi.json, then add a function here that
 * calls it and name it in `v1Calls` at the end. Until then `tsc` fails: `v1Calls` must name
 * every /v1 operation the spec has, and nothing else.
 */
import createClient, { type Client } from "openapi-fetch";
import type { components, paths } from "./generated/sensor-billing.js";

type Schemas = components["schemas"];
export type SensorBillingClient = Client<paths>;
export type ApiError = Schemas["ErrorDetail"];
/** What a call gives back: the answer, or the status and the error object. */
export type Outcome<T> =
  | { ok: true; value: T; replayed: boolean }
  | { ok: false; status: number; error: ApiError };

export function sensorBillingClient(baseUrl: string, serviceKey: string): SensorBillingClient {
  return createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${serviceKey}` } });
}

function outcome<T>(
  data: T | undefined,
  error: { error: ApiError } | undefined,
  response: Response,
): Outcome<T> {
  if (data !== undefined) {
    const replayed = response.headers.get("Idempotent-Replayed") === "true";
    return { ok: true, value: data, replayed };
  }
  if (error !== undefined) {
    return { ok: false, status: response.status, error: error.error };
  }
  throw new Error(`sensor-billing answered ${response.status} without a body`);
}

/** Start a subscription; send the customer to `value.url`. Retry with the same key. */
export async function startCheckout(
  client: SensorBillingClient,
  organizationId: string,
  urls: Schemas["CheckoutSessionRequest"],
  idempotencyKey: string,
): Promise<Outcome<Schemas["CheckoutSessionAnswer"]>> {
  const { data, error, response } = await client.POST(
    "/v1/organizations/{organization_id}/checkout-sessions",
    {
      params: {
        path: { organization_id: organizationId },
        header: { "Idempotency-Key": idempotencyKey },
      },
      body: urls,
    },
  );
  return outcome(data, error, response);
}

/** Where an organization that is already subscribed manages its subscription instead. */
export function portalInstead(error: ApiError): string | null {
  return error.code === "subscription_exists" ? (error.portal_sessions ?? null) : null;
}

/** Open the Billing Portal for the organization's customer. */
export async function openBillingPortal(
  client: SensorBillingClient,
  organizationId: string,
  returnUrl: string,
  idempotencyKey: string,
): Promise<Outcome<Schemas["PortalSessionAnswer"]>> {
  const { data, error, response } = await client.POST(
    "/v1/organizations/{organization_id}/portal-sessions",
    {
      params: {
        path: { organization_id: organizationId },
        header: { "Idempotency-Key": idempotencyKey },
      },
      body: { return_url: returnUrl },
    },
  );
  return outcome(data, error, response);
}

/** May the organization use the product now (entitlement, subscription, prices). */
export async function getBilling(
  client: SensorBillingClient,
  organizationId: string,
): Promise<Outcome<Schemas["BillingAnswer"]>> {
  const { data, error, response } = await client.GET(
    "/v1/organizations/{organization_id}/billing",
    { params: { path: { organization_id: organizationId } } },
  );
  return outcome(data, error, response);
}

/** Usage of the current period (or of `from`..`to`) and, for the current one, the amount
 * due so far; `value.preview.status` is `unavailable` when Stripe did not answer. */
export async function getUsage(
  client: SensorBillingClient,
  organizationId: string,
  period?: { from: string; to: string },
): Promise<Outcome<Schemas["UsageAnswer"]>> {
  const { data, error, response } = await client.GET(
    "/v1/organizations/{organization_id}/usage",
    {
      params: {
        path: { organization_id: organizationId },
        query: period ?? { period: "current" },
      },
    },
  );
  return outcome(data, error, response);
}

type Method = "get" | "put" | "post" | "delete" | "patch";
type OperationsOf<P extends keyof paths> = {
  [M in Method]: [NonNullable<paths[P][M]>] extends [never]
    ? never
    : `${Uppercase<M>} ${P & string}`;
}[Method];
/** Every /v1 operation in the spec, as "METHOD /v1/path". */
export type V1Operation = {
  [P in keyof paths]: P extends `/v1/${string}` ? OperationsOf<P> : never;
}[keyof paths];

type Assert<T extends true> = T;
// A guard for the guard: were V1Operation widened to `string`, `v1Calls` would check nothing.
export type V1OperationIsALiteralUnion = Assert<string extends V1Operation ? false : true>;

/** The call of each /v1 operation; the spec and this list must name the same operations. */
export const v1Calls = {
  "POST /v1/organizations/{organization_id}/checkout-sessions": startCheckout,
  "POST /v1/organizations/{organization_id}/portal-sessions": openBillingPortal,
  "GET /v1/organizations/{organization_id}/billing": getBilling,
  "GET /v1/organizations/{organization_id}/usage": getUsage,
} satisfies Record<V1Operation, (client: SensorBillingClient, ...args: never[]) => unknown>;
