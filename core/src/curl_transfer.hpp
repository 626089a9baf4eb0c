#pragma once
// What HttpClient (blocking) and AsyncHttpClient (curl multi) share: the header list owner, the
// response-header collector, one set of transfer options, and one wording for failures.
#include <curl/curl.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "switchboard/core/http_client.hpp"

namespace sb::curl_transfer {

struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

// Request headers as a curl list, plus "Expect:" (curl would otherwise send
// "Expect: 100-continue" for larger bodies and wait a round-trip for it).
SlistPtr header_list(const std::vector<std::pair<std::string, std::string>>& headers);

// CURLOPT_HEADERFUNCTION collecting into the HttpResponse passed as HEADERDATA: lower-cased
// names; a new status line (after a 100 Continue, say) starts a fresh block.
size_t collect_header(char* data, size_t size, size_t nmemb, void* response);

// Deadlines, no redirects, http/https only, no signals, keep-alive, no Nagle, the method and
// body (not copied: `body` must outlive the transfer), and the header list.
void set_options(CURL* c, const std::string& url, const std::string& method, const std::string& body,
                 curl_slist* headers, int timeout_ms, int connect_timeout_ms, const char* user_agent, char* errbuf);

// The transfer's failure in words ("timeout after 15000 ms", "connection refused …").
std::string describe_failure(CURL* c, CURLcode rc, const char* errbuf, int timeout_ms, int connect_timeout_ms);

}  // namespace sb::curl_transfer
