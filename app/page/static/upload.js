// The upload page: Uppy's Dashboard, this service's routes, and the user's files.
//
// Files up to 64 MiB for S3 and R2 go in one PUT with their SHA-256, computed here
// (Web Crypto), which the storage checks the bytes against: the small uploader
// below presigns them (/P/presign-upload) and sends the headers answered (create
// only where the bucket is write-once). Uppy's own PUT carries only Content-Type,
// so larger files, and every B2 file (B2 checks no SHA-256, and Web Crypto has no
// MD5), go through @uppy/aws-s3 in its signRequest mode (POST /P/s3/sign), in
// parts (the service creates and completes them: write-once). Azure goes through
// the small uploader, which PUTs to the SAS from /azure/presign-upload, in
// blocks above the threshold. Every finished upload is recorded with
// save-metadata; a refusal shows the service's own message on that file.
import { AwsS3, BasePlugin, Dashboard, Uppy } from '/assets/uppy/uppy.min.mjs'

const config = JSON.parse(document.getElementById('page-config').textContent)
const MiB = 1024 * 1024
const TOKEN_KEY = 'upload-service-token'
const AZURE_BLOCK_BYTES = 8 * MiB
// Web Crypto digests a whole buffer at once: the file is read into memory. Measured in
// Chromium here: about 4 ms per MiB (read and digest), 0.3 s for 64 MiB; 256 MiB failed
// to read. Larger files go in parts, without a checksum.
const SHA256_MAX_BYTES = 64 * MiB
const SHA256_PROVIDERS = new Set(['s3', 'r2'])

// --- Talking to the service -------------------------------------------------

let token = sessionStorage.getItem(TOKEN_KEY)

async function bearer () {
  if (config.authMode === 'dev') return null
  if (!token && config.tokenUrl) {
    const response = await fetch(config.tokenUrl, { credentials: 'include' })
    if (response.ok) {
      const body = await response.json()
      setToken(body.token || body.access_token || null)
    }
  }
  return token
}

function setToken (value) {
  token = value
  if (value) sessionStorage.setItem(TOKEN_KEY, value)
  else sessionStorage.removeItem(TOKEN_KEY)
  document.getElementById('sign-out').hidden = !value
}

async function api (path, { method = 'GET', body } = {}) {
  const headers = {}
  const credential = await bearer()
  if (credential) headers.Authorization = `Bearer ${credential}`
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
  if (response.status === 204) return null
  const answer = await response.json().catch(() => ({}))
  if (!response.ok) {
    const error = new Error(answer.error || `the service answered ${response.status}`)
    error.status = response.status
    throw error
  }
  return answer
}

// --- Messages ------------------------------------------------------------------

function say (text, ok = false) {
  const item = document.createElement('li')
  item.textContent = text
  if (ok) item.className = 'ok'
  document.getElementById('messages').append(item)
}

// --- Uploaders -----------------------------------------------------------------

const providerOf = new Map() // file id -> provider it was uploaded to
const requested = new Map() // key Uppy asked for -> file (the first request of an upload)

function partSize (size) {
  // The service's rule: the smallest whole MiB of at least 5 MiB that fits 10,000 parts.
  return Math.max(5 * MiB, Math.ceil(size / 10000 / MiB) * MiB)
}

function s3Options (provider) {
  return {
    id: 'uploader',
    limit: 3,
    // Every file in parts, even one part: the service itself creates and completes
    // an upload in parts, so nothing handed to the browser can replace it once saved
    // (Uppy's single PUT carries only Content-Type, so it cannot be made create only).
    shouldUseMultipart: (file) => file.size > 0,
    getChunkSize: (file) => partSize(file.size),
    generateObjectKey: (file) => {
      requested.set(file.id, file)
      return file.id
    },
    signRequest: async (request) => {
      const file = requested.get(request.key)
      const first = file && !request.uploadId
        ? { contentType: file.type || 'application/octet-stream', fileName: file.name, fileSize: file.size }
        : {}
      return api(`/${provider}/s3/sign`, { method: 'POST', body: { ...request, ...first } })
    },
  }
}

function xhrPut (url, body, headers, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest()
    xhr.open('PUT', url)
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value)
    xhr.upload.onprogress = (event) => onProgress(event.loaded)
    xhr.onload = () => (xhr.status < 300 ? resolve(xhr) : reject(new Error(`storage refused the upload (${xhr.status})`)))
    xhr.onerror = () => reject(new Error('network error while uploading'))
    xhr.send(body)
  })
}

async function sha256Base64 (blob) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer()))
  return btoa(String.fromCharCode(...digest))
}

function checksummed (provider, file) {
  // Web Crypto exists only in a secure context (HTTPS, or localhost).
  return SHA256_PROVIDERS.has(provider) && globalThis.crypto && crypto.subtle &&
    file.size > 0 && file.size <= SHA256_MAX_BYTES
}

async function withRetries (attempt, tries = 3) {
  for (let n = 1; ; n++) {
    try {
      return await attempt()
    } catch (error) {
      if (n >= tries) throw error
      await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** n))
    }
  }
}

// One PUT to a URL this service presigned, with the headers it answered: Azure's
// (one write-only SAS per blob; large files as blocks, then a block list), and S3's
// and R2's with a SHA-256. Files it does not take go to ``inParts`` (Uppy's AwsS3).
class DirectUpload extends BasePlugin {
  constructor (uppy, opts) {
    super(uppy, opts)
    this.id = opts.id
    this.type = 'uploader'
    this.provider = opts.provider
    this.inParts = opts.inParts
    this.upload = this.upload.bind(this)
  }

  install () { this.uppy.addUploader(this.upload) }

  uninstall () { this.uppy.removeUploader(this.upload) }

  async upload (fileIDs, uploadID) {
    const files = fileIDs.map((id) => this.uppy.getFile(id))
    const mine = this.inParts ? files.filter((file) => checksummed(this.provider, file)) : files
    const rest = files.filter((file) => !mine.includes(file)).map((file) => file.id)
    if (mine.length) this.uppy.emit('upload-start', mine)
    await Promise.allSettled([
      ...mine.map((file) => this.uploadOne(file).catch((error) => {
        this.uppy.emit('upload-error', this.uppy.getFile(file.id), error)
      })),
      rest.length ? this.inParts(rest, uploadID) : null,
    ])
  }

  async uploadOne (file) {
    if (this.provider === 'azure') return this.uploadToAzure(file)
    const checksumSHA256 = await sha256Base64(file.data)
    const presigned = await api(`/${this.provider}/presign-upload`, {
      method: 'POST',
      body: { fileName: file.name, contentType: file.type || 'application/octet-stream', fileSize: file.size, checksumSHA256 },
    })
    const started = Date.now()
    await withRetries(() => xhrPut(presigned.presignedUrl, file.data, presigned.headers, (done) => {
      this.uppy.emit('upload-progress', this.uppy.getFile(file.id), {
        uploadStarted: started, bytesUploaded: done, bytesTotal: file.size,
      })
    }))
    this.uppy.emit('upload-success', this.uppy.getFile(file.id), {
      status: 200, body: { key: presigned.objectKey }, uploadURL: presigned.publicFileUrl,
    })
  }

  async uploadToAzure (file) {
    const type = file.type || 'application/octet-stream'
    // One Put Blob below the threshold: singlePut gets a create-only SAS (no replacement, no lease).
    const single = file.size <= config.multipartThreshold
    const presigned = await api('/azure/presign-upload', {
      method: 'POST', body: { fileName: file.name, contentType: type, fileSize: file.size, singlePut: single },
    })
    const started = Date.now()
    const progress = (done) => this.uppy.emit('upload-progress', this.uppy.getFile(file.id), {
      uploadStarted: started, bytesUploaded: done, bytesTotal: file.size,
    })
    if (single) {
      await withRetries(() => xhrPut(presigned.sasUrl, file.data, presigned.headers, progress))
    } else {
      const ids = []
      let sent = 0
      for (let start = 0; start < file.size; start += AZURE_BLOCK_BYTES) {
        const id = btoa(String(ids.length).padStart(6, '0'))
        const block = file.data.slice(start, start + AZURE_BLOCK_BYTES)
        const url = `${presigned.sasUrl}&comp=block&blockid=${encodeURIComponent(id)}`
        await withRetries(() => xhrPut(url, block, {}, (loaded) => progress(sent + loaded)))
        sent += block.size
        ids.push(id)
      }
      const list = `<?xml version="1.0" encoding="utf-8"?><BlockList>${ids.map((id) => `<Latest>${id}</Latest>`).join('')}</BlockList>`
      await withRetries(() => xhrPut(`${presigned.sasUrl}&comp=blocklist`, list, {
        'Content-Type': 'application/xml', 'x-ms-blob-content-type': type,
      }, () => {}))
    }
    this.uppy.emit('upload-success', this.uppy.getFile(file.id), {
      status: 201, body: { key: presigned.objectKey }, uploadURL: presigned.fileUrl,
    })
  }
}

// --- Uppy ----------------------------------------------------------------------

const uppy = new Uppy({ restrictions: { maxFileSize: config.maxUploadBytes } })
uppy.use(Dashboard, {
  target: '#dashboard',
  inline: true,
  width: '100%',
  height: 380,
  proudlyDisplayPoweredByUppy: false,
  note: `Up to ${Math.round(config.maxUploadBytes / MiB)} MiB per file.`,
})

let provider = config.defaultProvider

function useUploader (name) {
  for (const id of ['uploader', 'inParts']) {
    const current = uppy.getPlugin(id)
    if (current) uppy.removePlugin(current)
  }
  if (name === 'azure') {
    uppy.use(DirectUpload, { id: 'uploader', provider: name })
    return
  }
  // AwsS3 takes the files DirectUpload hands it: its uploader is kept, not registered.
  let inParts = null
  const register = uppy.addUploader
  uppy.addUploader = (fn) => { inParts = fn }
  try {
    uppy.use(AwsS3, { ...s3Options(name), id: 'inParts' })
  } finally {
    uppy.addUploader = register
  }
  uppy.use(DirectUpload, { id: 'uploader', provider: name, inParts })
}

uppy.on('upload', (_id, files) => {
  for (const file of files || []) providerOf.set(file.id, provider)
})

uppy.on('upload-error', (file, error) => {
  if (file) say(`${file.name}: ${error.message}`)
})

// After each upload: record it, or show why the service refused it.
uppy.addPostProcessor(async (fileIDs) => {
  for (const id of fileIDs) {
    const file = uppy.getFile(id)
    const key = file && file.response && file.response.body && file.response.body.key
    if (!key || file.error) continue
    uppy.emit('postprocess-progress', file, { mode: 'indeterminate', message: 'Saving' })
    try {
      await api(`/${providerOf.get(id) || provider}/save-metadata`, { method: 'POST', body: { objectKey: key } })
      say(`${file.name}: uploaded and saved`, true)
    } catch (error) {
      uppy.emit('upload-error', file, error)
    }
    uppy.emit('postprocess-complete', uppy.getFile(id))
  }
  await loadFiles()
})

// --- The user's files ------------------------------------------------------------

let nextCursor = null

function humanSize (bytes) {
  if (bytes == null) return ''
  if (bytes < 1024) return `${bytes} B`
  if (bytes < MiB) return `${(bytes / 1024).toFixed(1)} KiB`
  return `${(bytes / MiB).toFixed(1)} MiB`
}

function fileRow (file) {
  const row = document.createElement('tr')
  row.dataset.id = file.id
  const name = document.createElement('td')
  name.className = 'name'
  name.textContent = file.fileName || file.objectKey
  const size = document.createElement('td')
  size.textContent = humanSize(file.size)
  const when = document.createElement('td')
  when.textContent = file.uploadedAt ? new Date(file.uploadedAt).toLocaleString() : ''
  const actions = document.createElement('td')
  actions.className = 'actions'
  const link = document.createElement('a')
  link.href = file.downloadUrl
  link.textContent = 'Download'
  link.setAttribute('aria-label', `Download ${name.textContent}`)
  link.rel = 'noopener'
  const remove = document.createElement('button')
  remove.type = 'button'
  remove.className = 'danger'
  remove.textContent = 'Delete'
  remove.setAttribute('aria-label', `Delete ${name.textContent}`)
  remove.addEventListener('click', async () => {
    remove.disabled = true
    try {
      await api(`/${provider}/files/${file.id}`, { method: 'DELETE' })
      row.remove()
      status(`Deleted ${name.textContent}.`)
      document.getElementById('files-heading').focus()
    } catch (error) {
      remove.disabled = false
      status(`Could not delete ${name.textContent}: ${error.message}`)
    }
  })
  actions.append(link, remove)
  row.append(name, size, when, actions)
  return row
}

function status (text) {
  document.getElementById('files-status').textContent = text
}

async function loadFiles (more = false) {
  const body = document.querySelector('#files tbody')
  if (!provider) return
  try {
    const cursor = more && nextCursor ? `&cursor=${encodeURIComponent(nextCursor)}` : ''
    const page = await api(`/${provider}/files?limit=20${cursor}`)
    if (!more) body.replaceChildren()
    body.append(...page.files.map(fileRow))
    nextCursor = page.nextCursor
    document.getElementById('more').hidden = !nextCursor
    status(body.children.length ? `${body.children.length} file(s) shown.` : 'No files yet.')
  } catch (error) {
    status(`Could not list your files: ${error.message}`)
  }
}

// --- Wiring ----------------------------------------------------------------------

function start () {
  const select = document.getElementById('provider')
  for (const name of config.providers) {
    const option = document.createElement('option')
    option.value = name
    option.textContent = { s3: 'AWS S3', r2: 'Cloudflare R2', b2: 'Backblaze B2', azure: 'Azure Blob Storage' }[name] || name
    select.append(option)
  }
  if (!config.providers.length) status('No storage provider is configured on the service.')
  select.value = provider
  select.addEventListener('change', () => {
    provider = select.value
    useUploader(provider)
    loadFiles()
  })
  if (provider) useUploader(provider)

  const signIn = document.getElementById('sign-in')
  if (config.authMode !== 'dev') {
    signIn.hidden = false
    document.getElementById('sign-out').hidden = !token
    document.getElementById('token-form').addEventListener('submit', (event) => {
      event.preventDefault()
      const field = document.getElementById('token')
      setToken(field.value.trim() || null)
      field.value = ''
      loadFiles()
    })
    document.getElementById('sign-out').addEventListener('click', () => {
      setToken(null)
      document.querySelector('#files tbody').replaceChildren()
      status('Signed out.')
    })
  }
  document.getElementById('more').addEventListener('click', () => loadFiles(true))
  loadFiles()
}

start()
window.uploadPage = { uppy }
