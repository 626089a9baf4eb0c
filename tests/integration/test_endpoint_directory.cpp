// The dispatcher's cache of tenants' webhook endpoints against a real PostgreSQL. A reload brings
// along every list past half its TTL, so the tenants' expiries fall together and a busy
// dispatcher reads them in one query per TTL (bench_pipeline: 0.036 endpoint queries per message
// with 50 tenants, when each tenant's list expired on its own clock).
#include <catch2/catch.hpp>

#include <chrono>
#include <thread>

#include "stack.hpp"
#include "switchboard/core/pg.hpp"
#include "switchboard/core/webhook_store.hpp"
#include "switchboard/workers/webhooks/endpoint_directory.hpp"

namespace {
sb::WebhookEndpoint endpoint_for(const std::string& tenant, const std::string& url) {
  sb::WebhookEndpoint e;
  e.tenant_id = tenant;
  e.url = url;
  e.events = {"*"};
  e.secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  return e;
}
}  // namespace

TEST_CASE("webhooks: the endpoint directory reloads lists past half their age together with a stale one",
          "[integration][postgres][webhooks]") {
  sbtest::TestStack stack("endpoint-directory", 1);
  const auto a = stack.create_tenant("dir-a"), b = stack.create_tenant("dir-b"), empty = stack.create_tenant("dir-empty");
  sb::pg::Pool pool(stack.config.postgres);
  sb::WebhookStore store(pool);
  store.create(endpoint_for(a.id, "http://127.0.0.1:1/a"));
  store.create(endpoint_for(b.id, "http://127.0.0.1:1/b1"));

  sb::EndpointDirectory directory(pool, 2000);
  REQUIRE(directory.of(b.id)->size() == 1);
  CHECK(directory.of(empty.id)->empty());
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // the cache's age is the subject: b's list past half its TTL
  store.create(endpoint_for(b.id, "http://127.0.0.1:1/b2"));      // not invalidated: only a reload shows it

  const auto for_a = directory.of(a.id);  // a stale (never read): one query for a, b and empty
  REQUIRE(for_a->size() == 1);
  CHECK((*for_a)[0].url == "http://127.0.0.1:1/a");
  const auto for_b = directory.of(b.id);  // cached 1.1 s ago, younger than its TTL, yet it has b2
  REQUIRE(for_b->size() == 2);
  CHECK((*for_b)[1].url == "http://127.0.0.1:1/b2");
  CHECK(directory.of(empty.id)->empty());

  // A tenant's own change still applies at once in the process that made it.
  store.create(endpoint_for(a.id, "http://127.0.0.1:1/a2"));
  directory.invalidate(a.id);
  CHECK(directory.of(a.id)->size() == 2);
}
