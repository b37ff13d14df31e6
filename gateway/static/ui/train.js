// The "New profile" form: photos (dropped or picked, previewed before upload), an
// optional voice clip (playable before upload) and its transcript, a name and the
// advanced training options. Submits POST /api/train as multipart.

import { api } from './api.js';
import { h } from './dom.js';
import { showError, submitOnce } from './forms.js';

const IMAGE_TYPES = ['image/jpeg', 'image/png', 'image/webp'];
const IMAGE_EXTENSIONS = /\.(jpe?g|png|webp)$/i;

export function setupTrain(form, { onSubmitted }) {
  const input = form.querySelector('#photos');
  const drop = form.querySelector('#drop');
  const thumbs = form.querySelector('#thumbs');
  const voice = form.querySelector('#voice');
  const preview = form.querySelector('#voice-preview');
  let photos = []; // {key, file, url, error, li, errorEl}

  function addFiles(files) {
    for (const file of files) {
      const key = `${file.name}:${file.size}:${file.lastModified}`;
      if (photos.some((p) => p.key === key)) continue;
      const ok = IMAGE_TYPES.includes(file.type) || (!file.type && IMAGE_EXTENSIONS.test(file.name));
      const photo = { key, file, error: ok ? null : 'Not a JPEG, PNG or WebP photo; it will not be uploaded.' };
      photo.url = ok ? URL.createObjectURL(file) : null;
      [photo.li, photo.errorEl] = thumb(photo);
      photos.push(photo);
      thumbs.append(photo.li);
    }
  }

  function thumb(photo) {
    const error = h('p', { class: 'file-error', role: 'alert', text: photo.error || '' });
    const li = h(
      'li',
      { class: photo.error ? 'invalid' : '', dataset: { name: photo.file.name } },
      photo.url
        ? h('img', {
            src: photo.url,
            alt: photo.file.name,
            onerror: () => li.classList.add('no-preview'),
          })
        : h('div', { class: 'no-image', text: '✕' }),
      h('span', { class: 'file-name', text: photo.file.name }),
      h('button', { type: 'button', class: 'remove', 'aria-label': `Remove ${photo.file.name}`, text: '×', onclick: () => remove(photo) }),
      error,
    );
    return [li, error];
  }

  function remove(photo) {
    if (photo.url) URL.revokeObjectURL(photo.url);
    photo.li.remove();
    photos = photos.filter((p) => p !== photo);
  }

  function clearPhotos() {
    for (const p of [...photos]) remove(p);
  }

  input.addEventListener('change', () => {
    addFiles(input.files);
    input.value = ''; // picking the same file again still fires `change`
  });
  for (const type of ['dragenter', 'dragover']) {
    drop.addEventListener(type, (ev) => {
      ev.preventDefault();
      drop.classList.add('over');
    });
  }
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (ev) => {
    ev.preventDefault();
    drop.classList.remove('over');
    addFiles(ev.dataTransfer.files);
  });

  voice.addEventListener('change', () => {
    if (preview.src) URL.revokeObjectURL(preview.src);
    const file = voice.files[0];
    preview.hidden = !file;
    if (file) preview.src = URL.createObjectURL(file);
    else preview.removeAttribute('src');
  });

  function options() {
    const out = {};
    for (const name of ['steps', 'rank', 'resolution']) {
      const raw = form.elements[name].value.trim();
      if (raw !== '') out[name] = Number(raw);
    }
    return out;
  }

  // The server names a bad photo in its message ('x.png' is not a readable image):
  // mark that thumbnail too.
  function markPhoto(err) {
    for (const p of photos) {
      if (err.message.includes(`'${p.file.name}'`)) {
        p.li.classList.add('invalid');
        p.errorEl.textContent = err.message;
      }
    }
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    submitOnce(form, async () => {
      for (const p of photos) if (!p.error) p.errorEl.textContent = '';
      const data = new FormData();
      for (const p of photos) if (!p.error) data.append('images', p.file, p.file.name);
      if (voice.files[0]) data.append('voice', voice.files[0], voice.files[0].name);
      data.append('voice_text', form.elements.voice_text.value);
      data.append('name', form.elements.name.value);
      data.append('options', JSON.stringify(options()));
      let accepted;
      try {
        accepted = await api.train(data);
      } catch (err) {
        if (err.field === 'images') markPhoto(err);
        throw err;
      }
      const name = form.elements.name.value.trim();
      onSubmitted(accepted.jobId, name);
      form.reset();
      clearPhotos();
      preview.hidden = true;
      preview.removeAttribute('src');
    });
  });

  return { showError: (err) => showError(form, err) };
}
