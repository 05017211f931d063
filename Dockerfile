# Build: docker build -t vigil .
# Run:   docker run -p 8080:8080 -v /proc:/host/proc:ro -e HOST_PROC=/host/proc vigil
#        (mount the host's /proc to see the host rather than the container)
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# `docker build --target test .` runs what CI runs: .ci/run installs
# Chromium for the browser tests, checks formatting, generated files and
# go.mod, then runs go vet, go test -race and a short fuzz pass. (The
# full-disk test needs to mount a tmpfs, which a build cannot: it skips.)
FROM build AS test
RUN .ci/run

FROM build AS binary
ARG VERSION=dev
# The same sources the test stage checks (build it with --target test, or
# run .ci/run, before you ship an image); static, so it runs on distroless.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/vigil . \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=binary /out/vigil /vigil
COPY --from=binary --chown=65532:65532 /out/data /data
USER 65532:65532
# In a container vigil listens on every interface: answer to IP addresses
# and localhost only, against DNS rebinding, until the names it is reached
# by are given (-e VIGIL_ALLOWED_HOSTS=vigil.example.com).
ENV VIGIL_ADDR=0.0.0.0:8080 \
    VIGIL_DATA=/data \
    VIGIL_ALLOWED_HOSTS=localhost
EXPOSE 8080
VOLUME ["/data"]
ENTRYPOINT ["/vigil"]
