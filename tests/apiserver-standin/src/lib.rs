//! A stand-in for the Kubernetes API server, for spark-admission's end-to-end tests only.
//!
//! What it reproduces of the real API server (kube-apiserver 1.33), on each Pod create, in order:
//! 1. scheme defaulting (`pkg/apis/core/v1/defaults.go`: dnsPolicy, restartPolicy,
//!    terminationGracePeriodSeconds, securityContext, schedulerName, enableServiceLinks,
//!    terminationMessagePath/Policy, imagePullPolicy by tag, port protocol, fieldRef apiVersion,
//!    volume defaultMode, requests from limits) and the in-tree mutating admission plugins
//!    that touch a plain Pod: ServiceAccount (serviceAccountName `default`, the projected
//!    `kube-api-access-xxxxx` volume mounted at /var/run/secrets/kubernetes.io/serviceaccount
//!    in every container and init container), DefaultTolerationSeconds (not-ready/unreachable
//!    NoExecute for 300 s), Priority (priority 0, preemptionPolicy); namespace from the URL,
//!    NamespaceLifecycle (unknown namespace → 404);
//! 2. mutating webhook dispatch from the rendered MutatingWebhookConfiguration: configurations
//!    sorted by name, `rules` (operations, apiGroups, apiVersions, resources incl. subresource
//!    form, scope), `namespaceSelector` (against the namespaces the stand-in knows and their
//!    labels, `kubernetes.io/metadata.name` included), `objectSelector`, `failurePolicy`,
//!    `timeoutSeconds` (bounds the call and is sent as `?timeout=Ns`), `sideEffects` on dry
//!    run, and `reinvocationPolicy: IfNeeded` (a webhook is called again when a *later*
//!    webhook changed the object — with a single webhook the real server never reinvokes;
//!    `--probe-reinvocation` makes the stand-in call it once more with the final object anyway,
//!    recorded as a reinvocation, to show the patch is idempotent);
//!    the call is HTTPS with rustls verifying the chain against `caBundle` for
//!    `<service>.<namespace>.svc`, ALPN `http/1.1`, kept-alive connections reused, an
//!    `admission.k8s.io/v1` AdmissionReview with a fresh uid per call, kind/resource/
//!    requestKind/requestResource, operation CREATE, userInfo, dryRun, options, object;
//! 3. response verification as `VerifyAdmissionResponse` does it (apiVersion/kind, response
//!    present, uid match, patchType JSONPatch with patch, base64 `patch`), a call failure or
//!    invalid response following `failurePolicy` (Fail → 500 InternalError Status worded like
//!    the real one; Ignore → admitted unmodified), a denial as `ToStatusErr` words it (code ≥
//!    400), RFC 6902 application (a patch that does not decode or apply → 500 even under
//!    Ignore), decoding of the patched object into the Pod type (unknown fields dropped,
//!    wrong types rejected) and re-defaulting of it, warnings returned as `Warning: 299`
//!    headers; then Pod validation for what a patch can break (`validation` module: unique
//!    volume names, DNS-label volume names, mounts naming a volume, unique mount paths per
//!    container, toleration operator/value/effect/tolerationSeconds, requests ≤ limits and
//!    quantity syntax, label and annotation keys/values, env var names, value vs valueFrom,
//!    node affinity operators/values/weights) → 422 Invalid;
//! 4. storage with uid, resourceVersion, creationTimestamp, generated name, status Pending with
//!    QoS class; watches (WebSocket as fabric8 opens them, or chunked HTTP) get ADDED/DELETED.
//!
//! What it does not reproduce: authentication and authorization (every caller is the
//! `--user`), other admission plugins (LimitRanger, ResourceQuota, PodSecurity, NodeRestriction,
//! ServiceAccount existence checks), validating webhooks and ValidatingAdmissionPolicy,
//! `matchConditions` (refused at start), `matchPolicy: Equivalent` conversions, admission on
//! UPDATE/DELETE and on non-Pod resources, webhook client certificates, the full Pod
//! validation (anything not listed above), field managers and conflicts of server-side apply
//! (an apply replaces the fields it names), strategic merge (treated as JSON merge patch),
//! field selectors, resourceVersion semantics of watches (no bookmarks, no 410 Gone), and
//! HTTP/2. A `patch` that is a JSON array of byte values, which Go's decoder would accept, is
//! refused on purpose: the contract in DESIGN.md is a base64 string.
#![forbid(unsafe_code)]

pub mod admission;
pub mod client;
pub mod defaulting;
pub mod jsonpatch;
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
