// The API reference: Swagger UI (vendored, see scripts/vendor-swagger-ui.sh) over the documents the control node
// generates from its code (docs/openapi/ holds the same). "Try it out" works on the management API, on this
// origin: the token the console keeps (sessionStorage or localStorage, never a URL) goes as a bearer token.
'use strict';

const TOKEN_KEY = 'livemix-management-token'; // the console's (console.js)

function token() {
  return sessionStorage.getItem(TOKEN_KEY) ?? localStorage.getItem(TOKEN_KEY);
}

function show(doc) {
  document.getElementById('download').href = `/ui/api/${doc}.json`;
  window.SwaggerUIBundle({
    url: `/ui/api/${doc}.json`,
    dom_id: '#reference',
    deepLinking: false,
    // Only the management API answers on this origin: the others are documented, not tried from here.
    supportedSubmitMethods: doc === 'management' ? ['get', 'put', 'post', 'delete'] : [],
    requestInterceptor: (request) => {
      if (doc === 'management' && !request.url.startsWith(`${location.origin}/ui/api/`)) {
        // The document names a default address; calls go to the control node that served this page.
        const url = new URL(request.url, location.href);
        request.url = `${location.origin}${url.pathname}${url.search}`;
        const t = token();
        if (t) request.headers.Authorization = `Bearer ${t}`;
      }
      return request;
    },
  });
}

for (const input of document.querySelectorAll('input[name="doc"]')) {
  input.addEventListener('change', () => show(input.value));
}
show('management');
