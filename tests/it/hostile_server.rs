//! A small hostile server on 127.0.0.1 for what the simulator will not do: redirects, absurd
//! `Retry-After` values, huge messages, endless pages. It records every request it receives.
//! Also the apps the `hostile_*` tests point at such servers.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Request;
use axum::handler::Handler;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use serde_json::json;

use crate::kit::{Auth, Tenant, TestApp, spawn_app};

/// The one device the hostile APIs list.
pub const MACHINE: &str = "0123456789abcdef0123456789abcdef01234567";

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub body: String,
}

/// A running server: its base URL and what it received.
pub struct Hostile {
    pub url: url::Url,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Hostile {
    /// Serves `router` on a free port of 127.0.0.1, over TLS when `tls` is given.
    pub async fn start(router: Router, tls: Option<&kbwatch::sim::TestTls>) -> Hostile {
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let router = router.layer(middleware::from_fn(move |req: Request, next: Next| {
            let log = log.clone();
            async move { record(log, req, next).await }
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("bound address");
        let scheme = match tls {
            Some(tls) => {
                let server = axum_server::from_tcp_rustls(listener, tls.config.clone());
                tokio::spawn(server.serve(router.into_make_service()));
                "https"
            }
            None => {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                tokio::spawn(async move { axum::serve(listener, router).await });
                "http"
            }
        };
        let url = format!("{scheme}://127.0.0.1:{}/", addr.port()).parse().expect("a URL");
        Hostile { url, received }
    }

    /// An API that lists [`MACHINE`] and answers its getmissingkbs with `getmissingkbs`.
    pub async fn listing_one_machine<H, T>(getmissingkbs: H) -> Hostile
    where
        H: Handler<T, ()>,
        T: 'static,
    {
        let router = Router::new()
            .route("/api/machines", get(one_machine))
            .route("/api/machines/{id}/getmissingkbs", get(getmissingkbs));
        Hostile::start(router, None).await
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("log lock").clone()
    }
}

async fn record(log: Arc<Mutex<Vec<Received>>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let entry = Received {
        path: parts.uri.path().to_owned(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    };
    log.lock().expect("log lock").push(entry);
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

/// `/api/machines` listing one Windows device.
pub async fn one_machine() -> axum::Json<serde_json::Value> {
    axum::Json(
        json!({ "value": [{ "id": MACHINE, "osPlatform": "Windows11", "computerDnsName": "pc" }] }),
    )
}

/// An app whose tenant calls `api` instead of the simulator.
pub async fn app_against(api: &Hostile) -> TestApp {
    let mut app = spawn_app(Default::default(), Auth::TokenFile, Tenant::default()).await;
    app.config.tenants[0].api_base = api.url.clone();
    app
}

/// An app whose `client_secret` credential asks `authority` (served with `tls`) for tokens.
pub async fn app_with_authority(authority: &Hostile, tls: &kbwatch::sim::TestTls) -> TestApp {
    let mut app = spawn_app(Default::default(), Auth::ClientSecret, Tenant::default()).await;
    let ca = app.dir.path().join("hostile-ca.pem");
    std::fs::write(&ca, &tls.ca_pem).unwrap();
    app.config.tls.ca_file = Some(ca);
    app.config.tenants[0].auth.authority = authority.url.clone();
    app
}
