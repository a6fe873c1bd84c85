# syntax=docker/dockerfile:1
# The sluice container image: what the ECS Fargate task of the Step Functions state
# machine runs (`sluice run --job ID`). Multi-stage: a release build, then a small
# runtime image with the binary alone, run as a non-root user.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so that a change in sluice's own code reuses their layer.
COPY Cargo.toml Cargo.lock ./
COPY engine/Cargo.toml engine/Cargo.toml
RUN mkdir -p engine/src tests/e2e \
    && echo 'fn main() {}' > engine/src/main.rs \
    && touch engine/src/lib.rs tests/e2e/main.rs \
    && cargo build --release --locked --bin sluice \
    && rm -rf engine/src
COPY engine engine
COPY jobs jobs
RUN touch engine/src/main.rs engine/src/lib.rs \
    && cargo build --release --locked --bin sluice \
    && mkdir /scratch

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
# TMPDIR: where the task's scratch volume is mounted (a file feed's fetched files,
# DataFusion's spills); the root file system is read-only.
COPY --from=build --chown=nonroot:nonroot /scratch /scratch
ENV TMPDIR=/scratch
# The task sets SLUICE_JOBS / SLUICE_STATE / SLUICE_LAKE (DynamoDB tables, S3 lake) and
# SLUICE_METRICS=emf; logs are JSON lines on stderr (no terminal).
ENV SLUICE_LOG_FORMAT=json
USER nonroot:nonroot
# A batch job that exits when done: ECS judges it by its exit code, not by probes.
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["--help"]
