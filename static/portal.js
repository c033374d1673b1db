// The portal's only script: marks the page as able to run the NHS.UK
// components' enhancements, then starts them. Every page works without it.
import { initAll } from './nhsuk-frontend-10.6.1.min.js'

document.body.classList.add('js-enabled', 'nhsuk-frontend-supported')
initAll()
