//! Integration tests: a real PostgreSQL (the private one, or `DATABASE_URL`) and the simulator
//! over real HTTP. One binary keeps link time down.

mod access;
mod classification;
mod credentials;
mod daemon;
mod dashboard;
mod demo;
mod deploy;
mod faults;
mod helpers;
mod history;
mod hostile;
mod hostile_server;
mod hostile_text;
mod listing;
mod migrations;
mod outage;
mod planner;
mod quota;
mod references;
mod replicas;
mod report;
mod results;
mod secrets;
mod serve;
mod shutdown;
mod simulator;
mod soak;
mod tenant_defaults;
mod terminal;
