// sb.events records as the webhook dispatcher reads them (anyone with produce rights may
// write there): parse_event_record(value).
#include "fuzz_support.hpp"
#include "switchboard/core/errors.hpp"
#include "switchboard/core/events.hpp"
#include "switchboard/core/ids.hpp"
#include "switchboard/core/message_store.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const auto in = sbfuzz::text(data, size);
  try {
    const auto e = sb::parse_event_record(in, sbfuzz::schemas());
    // Storable for replay: ids are uuids, the time is in range, the body is the record itself.
    if (!sb::MessageStore::valid_id(e.id) || !sb::MessageStore::valid_id(e.tenant_id)) __builtin_trap();
    if (!sb::rfc3339_in_range(e.occurred_at) || e.body != in || e.type.empty()) __builtin_trap();
  } catch (const sb::InvalidInput&) {
  }
  return 0;
}
