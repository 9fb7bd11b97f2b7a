//! A stand-in for the Kubernetes API server, for spark-admission's end-to-end tests only.
//!
//! What it reproduces of kube-apiserver (1.33), on each Pod create, in the real order, with the
//! upstream file each behaviour follows (paths in kubernetes/kubernetes):
//! 1. Decoding (`typed`): the body is decoded into the Go types of
//!    `staging/src/k8s.io/api/core/v1/types.go` and everything after works on that typed object
//!    — unknown fields dropped (`Warning: 299 - "unknown field ..."`, `?fieldValidation=Strict`
//!    refuses, `Ignore` is silent), wrong types refused (400 `Pod in version "v1" cannot be
//!    handled as a Pod: json: cannot unmarshal ...`), quantities parsed and written back as
//!    `resource.Quantity` does (`staging/src/k8s.io/apimachinery/pkg/api/resource/quantity.go`:
//!    `2048Mi` → `2Gi`, `0.5` → `500m`, canonical spellings kept); what a webhook or the store
//!    sees is the Go JSON encoding (`omitempty` zero values gone, `resources: {}` on every
//!    container, `creationTimestamp: null`, `status: {}`, `serviceAccount` written as the alias
//!    of `serviceAccountName` by `pkg/apis/core/v1/conversion.go`).
//! 2. Defaulting (`defaulting`, `pkg/apis/core/v1/defaults.go`): dnsPolicy, restartPolicy,
//!    terminationGracePeriodSeconds, securityContext, schedulerName, enableServiceLinks, host
//!    ports under hostNetwork, requests from limits, ResourceList values rounded up to milli,
//!    imagePullPolicy by tag, terminationMessagePath/Policy, port protocol, fieldRef apiVersion,
//!    probe and httpGet defaults, volume defaultMode, projected token expiration, hostPath type,
//!    a volume without a source → `emptyDir: {}`, ephemeral claim template `volumeMode:
//!    Filesystem`; namespace from the URL, NamespaceLifecycle (unknown namespace → 404).
//! 3. The mutating chain (`admission`), run twice when a webhook changed the object
//!    (`staging/src/k8s.io/apiserver/pkg/admission/reinvocation.go`):
//!    - the in-tree plugins (`plugins`), in `AllOrderedPlugins` order: LimitRanger
//!      (`plugin/pkg/admission/limitranger/admission.go`: defaults from the namespace's
//!      LimitRanges, `kubernetes.io/limit-ranger` annotation), ServiceAccount
//!      (`plugin/pkg/admission/serviceaccount/admission.go`: `default` account, projected
//!      `kube-api-access-xxxxx` token volume reused when present, mounted in every container
//!      lacking it), Priority (`plugin/pkg/admission/priority/admission.go`: priority and
//!      preemptionPolicy from the class or the global default; a differing value or an unknown
//!      class is 403 Forbidden), DefaultTolerationSeconds
//!      (`plugin/pkg/admission/defaulttolerationseconds/admission.go`);
//!    - the mutating webhooks (`staging/src/k8s.io/apiserver/pkg/admission/plugin/webhook/
//!      mutating/dispatcher.go`, `reinvocationcontext.go`): configurations by name, `rules`,
//!      `namespaceSelector`, `objectSelector` against the current object, `failurePolicy`,
//!      `timeoutSeconds` (also `?timeout=Ns`), `sideEffects` on dry run; in the second round
//!      an `IfNeeded` webhook is called again when something after its first call changed the
//!      object (a later webhook, or the in-tree plugins re-run), never one not called before;
//!      `--probe-reinvocation` additionally calls each `IfNeeded` webhook last called in the
//!      first round once more with the final object (recorded as a probe) to show its patch
//!      is idempotent;
//!    - the call (`client`): HTTPS verified against `caBundle` for `<service>.<namespace>.svc`,
//!      ALPN `http/1.1`, kept-alive connections, an `admission.k8s.io/v1` AdmissionReview
//!      (`.../webhook/request/admissionreview.go`, `CreateV1AdmissionReview`) with a fresh uid;
//!      the answer decoded whatever its media type (the webhook client's one serializer,
//!      JSON or YAML by content; a malformed `Content-Type` fails the call);
//!    - `VerifyAdmissionResponse` in its order and words (response present, uid, kind,
//!      `patch` without `patchType` and `patchType` without `patch` invalid); a call failure or
//!      invalid response follows `failurePolicy` (Fail → 500 `Internal error occurred: failed
//!      calling webhook ...`; Ignore → admitted unmodified), and so does a patch that does not
//!      decode or an unsupported patch type; a denial as `ToStatusErr` words it; the patch
//!      applied with `gopkg.in/evanphx/json-patch.v4` semantics (`jsonpatch`: `replace` of a
//!      missing member adds it, negative indices, `test` of a missing member against null
//!      passes); a patch that does not apply or a result that does not decode into the Pod type
//!      → 500 whatever the policy; "changed" decided by `equality.Semantic` before defaulting
//!      (quantities by value); the result re-defaulted; warnings as `Warning: 299` headers.
//! 4. `BeforeCreate`: generateName → name, then Pod validation (`validation`,
//!    `pkg/apis/core/validation/validation.go`) of what a patch can break → 422 Invalid.
//! 5. The validating plugins: LimitRanger's min/max per container (403), then PodSecurity
//!    (`podsecurity`, `staging/src/k8s.io/pod-security-admission/policy/check_*.go`) per the
//!    namespace's `pod-security.kubernetes.io/enforce` (403 `violates PodSecurity
//!    "baseline:latest": ...`) and `warn` (a `would violate PodSecurity` warning) labels.
//! 6. Storage with uid, resourceVersion, creationTimestamp, status Pending with QoS class;
//!    watches (WebSocket as fabric8 opens them, or chunked HTTP) get ADDED/DELETED.
//! 7. Namespaces (`namespaces`), fixed at start: get, list and a plain-HTTP watch with
//!    kube-apiserver's initial events, timeout and bookmarks, for the kube crate's reflector
//!    in spark-admission's Namespace cache.
//!
//! Deliberately stricter: a `patch` that is a JSON array of byte values, which Go's decoder
//! would accept, is refused — the contract in DESIGN.md is a base64 string.
//!
//! Not reproduced: authentication and authorization (every caller is the `--user`),
//! ServiceAccount existence and its automount/imagePullSecrets settings, `managedFields`,
//! ResourceQuota, NodeRestriction, RuntimeClass, LimitRanger's Pod-type items and
//! maxLimitRequestRatio, PodSecurity exemptions, AppArmor annotations, `audit` mode and
//! version-pinned policies (all evaluated at latest), validating webhooks and
//! ValidatingAdmissionPolicy, `matchConditions` (refused at start), `matchPolicy: Equivalent`
//! conversions, admission on UPDATE/DELETE and on non-Pod resources, webhook client
//! certificates, the rest of Pod validation (see `validation`), the legacy in-tree volume
//! sources (kept as sent, their defaults applied), field managers and conflicts of server-side
//! apply (an apply replaces the fields it names), strategic merge (treated as JSON merge
//! patch), field selectors, resourceVersion semantics of watches other than the Namespaces'
//! (no bookmarks, no 410 Gone), changes to namespaces, and HTTP/2.
#![forbid(unsafe_code)]

pub mod admission;
pub mod client;
pub mod defaulting;
pub mod jsonpatch;
pub mod namespaces;
pub mod plugins;
pub mod podsecurity;
pub mod quantity;
pub mod selector;
pub mod server;
pub mod status;
pub mod store;
pub mod typed;
pub mod validation;
pub mod webhook_config;
